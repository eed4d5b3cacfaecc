//! What this machine has, for the tests whose expectations depend on it:
//! each such test asserts what must happen either way, or says it skipped
//! (`common::skip`).

/// The CPU's feature flags from /proc/cpuinfo (`flags` on x86,
/// `Features` on ARM).
pub fn cpu_flags() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    text.lines()
        .find(|l| l.starts_with("flags") || l.starts_with("Features"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Whether this CPU runs the AVX2 AOTInductor fixtures (Inductor's AVX2
/// code needs avx2, fma and f16c); where it does not, they must come out
/// unsupported.
pub fn runs_avx2_packages() -> bool {
    let flags = cpu_flags();
    cfg!(target_arch = "x86_64")
        && ["avx2", "fma", "f16c"]
            .iter()
            .all(|f| flags.iter().any(|x| x == f))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}
