//! Loading a libtorch library at run time, for good: found through the
//! worker's rpath (DT_RUNPATH is searched by dlopen calls made from the
//! executable), with its symbols global so what it registers with libtorch
//! and what later libraries need from it are there, and never unloaded.

/// dlopens `name` (RTLD_NOW | RTLD_GLOBAL) and keeps it loaded. Err:
/// the dynamic loader's message (which names what is missing).
pub fn load_for_good(name: &str) -> Result<(), libloading::Error> {
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
    // SAFETY: the libraries loaded here are libtorch's own, whose
    // initialisers only register with the libtorch already loaded; they
    // are never unloaded.
    match unsafe { libloading::os::unix::Library::open(Some(name), flags) } {
        Ok(library) => {
            std::mem::forget(library);
            Ok(())
        }
        Err(e) => Err(e),
    }
}
