//! Whether precisiond runs under an emulator. qemu-user (through
//! `scripts/aarch64-run.sh`) is how ARM is tested on x86: behaviour there
//! is real, timings are not. qemu cannot be told reliably from inside (it
//! emulates the CPU's own /proc/cpuinfo), so the runner says so in
//! `PRECISIOND_EMULATED`, and reports and `detect` repeat it.

pub const EMULATED_VAR: &str = "PRECISIOND_EMULATED";

/// The emulator and the CPU it emulates ("qemu-aarch64 10.0.13, -cpu
/// cortex-a76"), when the runner said so.
pub fn emulator() -> Option<String> {
    std::env::var(EMULATED_VAR)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The words for reports and `detect`.
pub fn note(emulator: &str) -> String {
    format!(
        "EMULATED MACHINE ({emulator}): the hardware verdicts follow the emulated CPU's features, \
         but every timing and speedup here is the emulator's, not any real CPU's"
    )
}
