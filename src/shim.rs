//! Safe wrappers over `csrc/shim.cpp`, the C ABI to the libtorch APIs that
//! tch does not wrap. Every C++ exception arrives here as an error string.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::Path;

mod ffi {
    use std::ffi::{c_char, c_int};
    extern "C" {
        pub fn pd_free_string(s: *mut c_char);
        pub fn pd_libtorch_version() -> *const c_char;
        pub fn pd_cpu_capability(out: *mut *mut c_char) -> *mut c_char;
        pub fn pd_supported_qengines(out: *mut *mut c_char) -> *mut c_char;
        pub fn pd_module_info(
            path: *const c_char,
            num_inputs: *mut i64,
            num_required: *mut i64,
            has_quantized_ops: *mut c_int,
        ) -> *mut c_char;
    }
}

/// Takes ownership of a string the shim allocated.
///
/// # Safety
/// `ptr` is NULL or came from the shim's `copy_string`.
pub(crate) unsafe fn take_string(ptr: *mut c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    let s = CStr::from_ptr(ptr).to_string_lossy().into_owned();
    ffi::pd_free_string(ptr);
    Some(s)
}

/// Turns the shim's "error string or NULL" convention into a `Result`.
///
/// # Safety
/// `err` is NULL or an error string from the shim.
pub(crate) unsafe fn check(err: *mut c_char) -> Result<(), String> {
    match take_string(err) {
        None => Ok(()),
        Some(message) => Err(message),
    }
}

pub(crate) fn c_path(path: &Path) -> Result<CString, String> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("path {} contains a NUL byte", path.display()))
}

/// The version of the libtorch this binary runs on, e.g. "2.13.0".
pub fn libtorch_version() -> String {
    // SAFETY: returns a pointer to a static string literal.
    unsafe { CStr::from_ptr(ffi::pd_libtorch_version()) }
        .to_string_lossy()
        .into_owned()
}

/// libtorch's own view of the CPU: the kernel level it dispatches to
/// ("AVX512", "AVX2", "DEFAULT", ...).
pub fn cpu_capability() -> Result<String, String> {
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: `out` is written only on success, with a shim-owned string.
    unsafe {
        check(ffi::pd_cpu_capability(&mut out))?;
        Ok(take_string(out).unwrap_or_default())
    }
}

/// The quantized engines libtorch was built with ("x86", "fbgemm", "onednn", "qnnpack").
pub fn supported_qengines() -> Result<Vec<String>, String> {
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: as in `cpu_capability`.
    let names = unsafe {
        check(ffi::pd_supported_qengines(&mut out))?;
        take_string(out).unwrap_or_default()
    };
    Ok(names
        .split(',')
        .filter(|name| !name.is_empty() && *name != "noqengine")
        .map(str::to_owned)
        .collect())
}

/// What the TorchScript file itself says about its interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Arguments of `forward`, not counting `self`.
    pub num_inputs: usize,
    /// Of those, the ones without a default value.
    pub num_required: usize,
    /// The graphs call `quantized::` operators: the model is already INT8.
    pub has_quantized_ops: bool,
}

pub fn module_info(path: &Path) -> Result<ModuleInfo, String> {
    let c_path = c_path(path)?;
    let mut num_inputs: i64 = 0;
    let mut num_required: i64 = 0;
    let mut quantized: c_int = 0;
    // SAFETY: all pointers are valid for the call; outputs are plain values.
    unsafe {
        check(ffi::pd_module_info(
            c_path.as_ptr(),
            &mut num_inputs,
            &mut num_required,
            &mut quantized,
        ))?
    };
    Ok(ModuleInfo {
        num_inputs: num_inputs.max(0) as usize,
        num_required: num_required.max(0) as usize,
        has_quantized_ops: quantized != 0,
    })
}
