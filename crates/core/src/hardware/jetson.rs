//! Recognises NVIDIA Jetson boards from the device tree and the L4T release
//! file, so a report can name the board (its GPU shows up through CUDA like
//! any other; its CPU through /proc/cpuinfo).

use std::fs;
use std::path::Path;

/// Reads `<root>/proc/device-tree/model`, `<root>/proc/device-tree/compatible`
/// and `<root>/etc/nv_tegra_release` and names the board, or `None` when this
/// is not a Jetson. `root` is `/` on a live system; tests pass a tempdir.
pub fn detect_jetson(root: &Path) -> Option<String> {
    let read = |rel: &str| fs::read(root.join(rel)).ok();
    let model = read("proc/device-tree/model").map(|b| device_tree_string(&b));
    let compatible = read("proc/device-tree/compatible").map(|b| device_tree_string(&b));
    let release = read("etc/nv_tegra_release").map(|b| String::from_utf8_lossy(&b).into_owned());
    parse_jetson(model.as_deref(), compatible.as_deref(), release.as_deref())
}

/// Device-tree properties are NUL-terminated (a `compatible` list is several
/// NUL-separated strings): turn them into one readable line.
pub fn device_tree_string(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split('\0')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Names the board from the device-tree `model`, the device-tree
/// `compatible` list and the content of `nv_tegra_release`; pure, for tests.
///
/// A board counts as a Jetson when its model says "Jetson", when the L4T
/// release file exists (only NVIDIA's Jetson BSP installs it), or when the
/// device tree is compatible with an `nvidia,tegra...` SoC.
pub fn parse_jetson(
    model: Option<&str>,
    compatible: Option<&str>,
    tegra_release: Option<&str>,
) -> Option<String> {
    let model = model.map(str::trim).filter(|m| !m.is_empty());
    let l4t = tegra_release.and_then(l4t_version);
    let model_says = model.is_some_and(|m| m.to_ascii_lowercase().contains("jetson"));
    let tegra_soc = compatible.is_some_and(|c| c.contains("nvidia,tegra"));
    if !(model_says || tegra_release.is_some() || tegra_soc) {
        return None;
    }
    let name = model.unwrap_or("NVIDIA Jetson (board model not in device tree)");
    Some(match l4t {
        Some(v) => format!("{name} (L4T {v})"),
        None => name.to_string(),
    })
}

/// "R35.4.1" from a line like
/// `# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, ...`.
pub fn l4t_version(tegra_release: &str) -> Option<String> {
    let line = tegra_release.lines().find(|l| l.contains("REVISION"))?;
    let release = line.trim_start_matches('#').split_whitespace().find(|w| {
        w.starts_with('R') && w[1..].chars().all(|c| c.is_ascii_digit()) && w.len() > 1
    })?;
    let revision = line
        .split(',')
        .find_map(|part| part.trim().strip_prefix("REVISION:"))
        .map(str::trim)
        .filter(|r| !r.is_empty());
    Some(match revision {
        Some(r) => format!("{release}.{r}"),
        None => release.to_string(),
    })
}

/// Old Jetson kernels name the board in `/proc/cpuinfo`'s `Hardware` line
/// ("jetson_tx1"); used when only a cpuinfo capture is available.
pub fn jetson_from_hardware_line(hardware: &str) -> Option<String> {
    let lower = hardware.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("jetson") {
        let board = rest
            .trim_start_matches(['_', '-', ' '])
            .replace(['_', '-'], " ");
        let board = board.trim().to_ascii_uppercase();
        return Some(if board.is_empty() {
            "NVIDIA Jetson".to_string()
        } else {
            format!("NVIDIA Jetson {board}")
        });
    }
    if lower.contains("tegra") {
        return Some(format!("NVIDIA Tegra board ({})", hardware.trim()));
    }
    None
}
