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
            data: *const c_char,
            len: usize,
            num_inputs: *mut i64,
            num_required: *mut i64,
            has_quantized_ops: *mut c_int,
        ) -> *mut c_char;
        pub fn pd_rnn_constant_state_dtypes(
            data: *const c_char,
            len: usize,
            out: *mut *mut c_char,
        ) -> *mut c_char;
        pub fn pd_collect_warnings();
        pub fn pd_take_warnings(out: *mut *mut c_char) -> *mut c_char;
        pub fn pd_set_qengine(engine: *const c_char) -> *mut c_char;
        pub fn pd_quantize_static(
            model_data: *const c_char,
            model_len: usize,
            out_path: *const c_char,
            engine: *const c_char,
            tensors: *const *mut std::ffi::c_void,
            num_batches: i64,
            inputs_per_batch: i64,
            inlined_methods: *mut i64,
            kinds: *mut *mut c_char,
            warnings: *mut *mut c_char,
        ) -> *mut c_char;
        pub fn pd_quantize_dynamic(
            model_data: *const c_char,
            model_len: usize,
            out_path: *const c_char,
            engine: *const c_char,
            inlined_methods: *mut i64,
            kinds: *mut *mut c_char,
            warnings: *mut *mut c_char,
        ) -> *mut c_char;
        pub fn pd_forward_kinds(
            data: *const c_char,
            len: usize,
            out: *mut *mut c_char,
        ) -> *mut c_char;
        pub fn pd_load_pickled_tensors(
            path: *const c_char,
            tensors: *mut *mut *mut std::ffi::c_void,
            count: *mut i64,
        ) -> *mut c_char;
        pub fn pd_free_pointer_array(array: *mut *mut std::ffi::c_void);
        pub fn pd_cuda_memory_stats(
            device: c_int,
            allocated: *mut i64,
            peak_allocated: *mut i64,
            reserved: *mut i64,
            peak_reserved: *mut i64,
        ) -> *mut c_char;
        pub fn pd_cuda_start_memory_window(device: c_int) -> *mut c_char;
        pub fn pd_profile_start() -> *mut c_char;
        pub fn pd_profile_stop(out: *mut *mut c_char) -> *mut c_char;
        pub fn pd_aoti_load(path: *const c_char, handle: *mut *mut std::ffi::c_void)
            -> *mut c_char;
        pub fn pd_aoti_run(
            handle: *mut std::ffi::c_void,
            inputs: *const *mut std::ffi::c_void,
            num_inputs: i64,
            outputs: *mut *mut *mut std::ffi::c_void,
            count: *mut i64,
        ) -> *mut c_char;
        pub fn pd_aoti_free(handle: *mut std::ffi::c_void);
        pub fn pd_cast_floating(
            data: *const c_char,
            len: usize,
            dtype: c_int,
            out: *mut *mut c_char,
            out_len: *mut usize,
        ) -> *mut c_char;
        pub fn pd_autocast_enter(cuda: c_int, dtype: c_int, saved: *mut c_int) -> *mut c_char;
        pub fn pd_autocast_exit(cuda: c_int, saved: *const c_int) -> *mut c_char;
        pub fn pd_op_namespaces(
            data: *const c_char,
            len: usize,
            out: *mut *mut c_char,
        ) -> *mut c_char;
        pub fn pd_op_namespace_registered(ns: *const c_char, registered: *mut c_int)
            -> *mut c_char;
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

/// Why a call into the shim failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShimError {
    /// libtorch threw (the shim turns every C++ exception into this): its
    /// message, which is libtorch's to word and not ours to parse; see
    /// `model::clean_torch_error` for the line users need.
    #[error("{0}")]
    Libtorch(String),
    #[error("path {} contains a NUL byte", .0.display())]
    NulInPath(std::path::PathBuf),
    #[error("engine name contains a NUL byte")]
    NulInEngine,
    #[error("CUDA device index {0} is too large")]
    DeviceIndex(usize),
    #[error("calibration batches differ in their number of inputs")]
    UnevenBatches,
    #[error("operator namespace {0:?} contains a NUL byte")]
    NulInNamespace(String),
}

/// Turns the shim's "error string or NULL" convention into a `Result`.
///
/// # Safety
/// `err` is NULL or an error string from the shim.
pub(crate) unsafe fn check(err: *mut c_char) -> Result<(), ShimError> {
    match take_string(err) {
        None => Ok(()),
        Some(message) => Err(ShimError::Libtorch(message)),
    }
}

pub(crate) fn c_path(path: &Path) -> Result<CString, ShimError> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| ShimError::NulInPath(path.to_owned()))
}

/// The version of the libtorch this binary runs on, e.g. "2.13.0".
pub fn libtorch_version() -> String {
    // SAFETY: returns a pointer to a static string literal.
    unsafe { CStr::from_ptr(ffi::pd_libtorch_version()) }
        .to_string_lossy()
        .into_owned()
}

/// Calls a shim function that hands back a string through `out`.
fn call_for_string(
    f: unsafe extern "C" fn(*mut *mut c_char) -> *mut c_char,
) -> Result<String, ShimError> {
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: `out` is written only on success, with a shim-owned string;
    // both it and the error string are freed by `take_string`.
    unsafe {
        check(f(&mut out))?;
        Ok(take_string(out).unwrap_or_default())
    }
}

/// The non-empty lines of a newline-separated list from the shim.
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// libtorch's own view of the CPU: the kernel level it dispatches to
/// ("AVX512", "AVX2", "DEFAULT", ...).
pub fn cpu_capability() -> Result<String, ShimError> {
    call_for_string(ffi::pd_cpu_capability)
}

/// The quantized engines libtorch was built with ("x86", "fbgemm", "onednn", "qnnpack").
pub fn supported_qengines() -> Result<Vec<String>, ShimError> {
    let names = call_for_string(ffi::pd_supported_qengines)?;
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

/// What the model whose file holds `bytes` says about its interface.
pub fn module_info(bytes: &[u8]) -> Result<ModuleInfo, ShimError> {
    let mut num_inputs: i64 = 0;
    let mut num_required: i64 = 0;
    let mut quantized: c_int = 0;
    // SAFETY: all pointers are valid for the call (the shim copies `bytes`
    // before reading them); outputs are plain values.
    unsafe {
        check(ffi::pd_module_info(
            bytes.as_ptr().cast(),
            bytes.len(),
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

/// The operator namespaces a TorchScript file's code calls (`ops.NS.name(`
/// in its archive's code/ records), sorted, read from the file's bytes
/// without loading it (a model calling an unregistered operator cannot be
/// loaded).
pub fn op_namespaces(bytes: &[u8]) -> Result<Vec<String>, ShimError> {
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: `bytes` is valid for the call (the shim copies it); `out` is
    // written only on success with a shim-owned string, freed by take_string.
    let text = unsafe {
        check(ffi::pd_op_namespaces(
            bytes.as_ptr().cast(),
            bytes.len(),
            &mut out,
        ))?;
        take_string(out).unwrap_or_default()
    };
    Ok(lines(&text))
}

/// Whether libtorch has any operator of namespace `ns` registered now.
pub fn op_namespace_registered(ns: &str) -> Result<bool, ShimError> {
    let c_ns = CString::new(ns).map_err(|_| ShimError::NulInNamespace(ns.to_owned()))?;
    let mut registered: c_int = 0;
    // SAFETY: a valid C string for the call; the output is a plain value.
    unsafe {
        check(ffi::pd_op_namespace_registered(
            c_ns.as_ptr(),
            &mut registered,
        ))?
    };
    Ok(registered != 0)
}

/// An RNN layer's initial state that the graph makes with a constant
/// floating-point dtype, as tracing records nn.LSTM's default zero state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstantRnnState {
    /// The RNN operator ("aten::lstm").
    pub rnn: String,
    /// The operator that makes the state ("aten::zeros").
    pub factory: String,
    /// libtorch's name of the dtype ("Float", "Half", "BFloat16").
    pub dtype: String,
}

/// The RNN states of the model whose file holds `bytes` whose dtype is a
/// constant in its forward graph.
pub fn rnn_constant_state_dtypes(bytes: &[u8]) -> Result<Vec<ConstantRnnState>, ShimError> {
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: the shim copies `bytes` before reading them; `out` is written
    // only on success, with a shim-owned string freed by `take_string`.
    let text = unsafe {
        check(ffi::pd_rnn_constant_state_dtypes(
            bytes.as_ptr().cast(),
            bytes.len(),
            &mut out,
        ))?;
        take_string(out).unwrap_or_default()
    };
    Ok(lines(&text)
        .iter()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some(ConstantRnnState {
                rnn: words.next()?.to_owned(),
                factory: words.next()?.to_owned(),
                dtype: words.next()?.to_owned(),
            })
        })
        .collect())
}

/// Collects libtorch's warnings from now on instead of printing them.
pub fn collect_warnings() {
    // SAFETY: no arguments; installs a process-wide handler once.
    unsafe { ffi::pd_collect_warnings() }
}

/// The distinct warnings libtorch gave since the last call.
pub fn take_warnings() -> Vec<String> {
    lines(&call_for_string(ffi::pd_take_warnings).unwrap_or_default())
}

/// Sets libtorch's quantized engine for the quantized models run next.
pub fn set_qengine(engine: &str) -> Result<(), ShimError> {
    let engine = CString::new(engine).map_err(|_| ShimError::NulInEngine)?;
    // SAFETY: a valid C string for the duration of the call.
    unsafe { check(ffi::pd_set_qengine(engine.as_ptr())) }
}

/// What quantization left behind besides the saved model.
#[derive(Debug, Default)]
pub struct QuantizeOutcome {
    /// libtorch's warnings during the passes (deprecations among them).
    pub warnings: Vec<String>,
    /// Submodule methods that took a module as an argument, which the
    /// passes refuse: where there were any, the model was quantized from
    /// its forward inlined (csrc/shim.cpp, inline_methods_taking_modules).
    pub inlined_methods: usize,
    /// The node kinds of the quantized forward (inlined), with their counts.
    pub kinds: OpKinds,
}

/// Node kinds ("aten::linear", "quantized::linear_dynamic") and how many
/// nodes of each a forward graph has.
pub type OpKinds = std::collections::BTreeMap<String, u64>;

/// Parses the shim's "KIND COUNT" lines.
fn op_kinds(text: &str) -> OpKinds {
    text.lines()
        .filter_map(|line| {
            let (kind, count) = line.rsplit_once(' ')?;
            Some((kind.to_owned(), count.parse().ok()?))
        })
        .collect()
}

/// The node kinds of the forward of the model whose file holds `bytes`,
/// inlined.
pub fn forward_kinds(bytes: &[u8]) -> Result<OpKinds, ShimError> {
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: `bytes` is valid for the call (the shim copies it); on
    // success `out` is a string the shim allocated, taken here.
    let text = unsafe {
        let err = ffi::pd_forward_kinds(bytes.as_ptr().cast(), bytes.len(), &mut out);
        let text = take_string(out).unwrap_or_default();
        check(err)?;
        text
    };
    Ok(op_kinds(&text))
}

/// Statically quantizes the TorchScript model whose file holds `model`
/// with libtorch's graph-mode passes, calibrating on `batches` (each one
/// forward() call's inputs), and saves it to `out`.
pub fn quantize_static(
    model: &[u8],
    out: &Path,
    engine: &str,
    batches: &[Vec<tch::Tensor>],
) -> Result<QuantizeOutcome, (ShimError, Vec<String>)> {
    let fail = |e: ShimError| (e, Vec::new());
    let out_c = c_path(out).map_err(fail)?;
    let engine_c = CString::new(engine).map_err(|_| fail(ShimError::NulInEngine))?;
    let per_batch = batches.first().map_or(0, Vec::len);
    if batches.iter().any(|b| b.len() != per_batch) {
        return Err(fail(ShimError::UnevenBatches));
    }
    let pointers: Vec<*mut std::ffi::c_void> = batches
        .iter()
        .flatten()
        .map(|t| t.as_ptr() as *mut std::ffi::c_void)
        .collect();
    let mut inlined: i64 = 0;
    let mut kinds_ptr: *mut c_char = std::ptr::null_mut();
    let mut warnings_ptr: *mut c_char = std::ptr::null_mut();
    // SAFETY: the tensor pointers stay valid (borrowed from `batches`) for
    // the call; the shim only reads them and `model`. Strings are valid C
    // strings; the ones the shim hands back are taken here.
    let (result, kinds, warnings) = unsafe {
        let err = ffi::pd_quantize_static(
            model.as_ptr().cast(),
            model.len(),
            out_c.as_ptr(),
            engine_c.as_ptr(),
            pointers.as_ptr(),
            batches.len() as i64,
            per_batch as i64,
            &mut inlined,
            &mut kinds_ptr,
            &mut warnings_ptr,
        );
        (
            check(err),
            take_string(kinds_ptr).unwrap_or_default(),
            take_string(warnings_ptr).unwrap_or_default(),
        )
    };
    outcome(result, inlined, &kinds, &warnings)
}

/// Dynamically quantizes the TorchScript model whose file holds `model`
/// (int8 weights, activations quantized at run time; no calibration) with
/// libtorch's graph-mode passes, and saves it to `out`.
pub fn quantize_dynamic(
    model: &[u8],
    out: &Path,
    engine: &str,
) -> Result<QuantizeOutcome, (ShimError, Vec<String>)> {
    let fail = |e: ShimError| (e, Vec::new());
    let out_c = c_path(out).map_err(fail)?;
    let engine_c = CString::new(engine).map_err(|_| fail(ShimError::NulInEngine))?;
    let mut inlined: i64 = 0;
    let mut kinds_ptr: *mut c_char = std::ptr::null_mut();
    let mut warnings_ptr: *mut c_char = std::ptr::null_mut();
    // SAFETY: `model` and the C strings are valid for the call; the
    // strings the shim hands back are taken here.
    let (result, kinds, warnings) = unsafe {
        let err = ffi::pd_quantize_dynamic(
            model.as_ptr().cast(),
            model.len(),
            out_c.as_ptr(),
            engine_c.as_ptr(),
            &mut inlined,
            &mut kinds_ptr,
            &mut warnings_ptr,
        );
        (
            check(err),
            take_string(kinds_ptr).unwrap_or_default(),
            take_string(warnings_ptr).unwrap_or_default(),
        )
    };
    outcome(result, inlined, &kinds, &warnings)
}

fn outcome(
    result: Result<(), ShimError>,
    inlined: i64,
    kinds: &str,
    warnings: &str,
) -> Result<QuantizeOutcome, (ShimError, Vec<String>)> {
    let warnings = lines(warnings);
    match result {
        Ok(()) => Ok(QuantizeOutcome {
            warnings,
            inlined_methods: inlined.max(0) as usize,
            kinds: op_kinds(kinds),
        }),
        Err(e) => Err((e, warnings)),
    }
}

/// Reads a tensor (or a tuple/list of tensors) saved by Python's torch.save.
pub fn load_pickled_tensors(path: &Path) -> Result<Vec<tch::Tensor>, ShimError> {
    let c = c_path(path)?;
    let mut array: *mut *mut std::ffi::c_void = std::ptr::null_mut();
    let mut count: i64 = 0;
    // SAFETY: on success the shim hands over `count` new torch::Tensor
    // pointers, which tch's Tensor owns and frees; the array itself is freed here.
    unsafe {
        check(ffi::pd_load_pickled_tensors(
            c.as_ptr(),
            &mut array,
            &mut count,
        ))?;
        Ok(take_tensors(array, count))
    }
}

/// Takes ownership of the tensors in an array the shim handed over, and
/// frees the array.
///
/// # Safety
/// `array` holds `count` new torch::Tensor pointers from the shim's `hand_over`.
unsafe fn take_tensors(array: *mut *mut std::ffi::c_void, count: i64) -> Vec<tch::Tensor> {
    let tensors = (0..count.max(0) as usize)
        .map(|i| tch::Tensor::from_ptr(*array.add(i) as *mut torch_sys::C_tensor))
        .collect();
    ffi::pd_free_pointer_array(array);
    tensors
}

/// An AOTInductor package loaded by libtorch's AOTIModelPackageLoader.
pub struct AotiPackage {
    handle: *mut std::ffi::c_void,
}

impl AotiPackage {
    /// Loads the package at `path`: libtorch unpacks it and dlopens its
    /// compiled code, so the caller has checked that this machine can run
    /// that code (`precisiond_core::aoti::can_run`).
    pub fn load(path: &Path) -> Result<AotiPackage, ShimError> {
        let c = c_path(path)?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: on success the shim hands over a loader this value owns.
        unsafe { check(ffi::pd_aoti_load(c.as_ptr(), &mut handle))? };
        Ok(AotiPackage { handle })
    }

    /// One call of the compiled model.
    pub fn run(&self, inputs: &[tch::Tensor]) -> Result<Vec<tch::Tensor>, ShimError> {
        let pointers: Vec<*mut std::ffi::c_void> =
            inputs.iter().map(|t| t.as_ptr() as *mut _).collect();
        let mut array: *mut *mut std::ffi::c_void = std::ptr::null_mut();
        let mut count: i64 = 0;
        // SAFETY: the inputs outlive the call; the outputs are handed over.
        unsafe {
            check(ffi::pd_aoti_run(
                self.handle,
                pointers.as_ptr(),
                pointers.len() as i64,
                &mut array,
                &mut count,
            ))?;
            Ok(take_tensors(array, count))
        }
    }
}

impl Drop for AotiPackage {
    fn drop(&mut self) {
        // SAFETY: the handle came from pd_aoti_load and is freed once.
        unsafe { ffi::pd_aoti_free(self.handle) }
    }
}

/// libtorch's CUDA caching allocator statistics for one device, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CudaMemory {
    /// Handed out to tensors now.
    pub allocated: u64,
    /// Handed out to tensors at the peak since the window started.
    pub peak_allocated: u64,
    /// Reserved from the driver now.
    pub reserved: u64,
    pub peak_reserved: u64,
}

fn device_index(device: usize) -> Result<c_int, ShimError> {
    c_int::try_from(device).map_err(|_| ShimError::DeviceIndex(device))
}

/// The allocator's statistics for CUDA device `device`; an error when this
/// libtorch has no CUDA allocator.
pub fn cuda_memory(device: usize) -> Result<CudaMemory, ShimError> {
    let index = device_index(device)?;
    let (mut a, mut pa, mut r, mut pr) = (0_i64, 0_i64, 0_i64, 0_i64);
    // SAFETY: plain integer outputs, written only on success.
    unsafe {
        check(ffi::pd_cuda_memory_stats(
            index, &mut a, &mut pa, &mut r, &mut pr,
        ))?
    };
    let bytes = |v: i64| v.max(0) as u64;
    Ok(CudaMemory {
        allocated: bytes(a),
        peak_allocated: bytes(pa),
        reserved: bytes(r),
        peak_reserved: bytes(pr),
    })
}

/// Starts a measurement window on `device`: frees the allocator's cached
/// blocks and resets its peaks.
pub fn cuda_start_memory_window(device: usize) -> Result<(), ShimError> {
    let index = device_index(device)?;
    // SAFETY: no pointers.
    unsafe { check(ffi::pd_cuda_start_memory_window(index)) }
}

/// An operator profile of what this thread runs (libtorch's RecordFunction
/// callbacks, installed for this thread only). Read it with
/// [`ProfileSession::finish`]; dropped unread (an error, a panic), it still
/// removes the callback, so no later call is slowed down by it.
pub struct ProfileSession {
    finished: bool,
    /// The callback belongs to the thread that started it: not `Send`.
    _this_thread: std::marker::PhantomData<*const ()>,
}

impl ProfileSession {
    pub fn start() -> Result<ProfileSession, ShimError> {
        // SAFETY: no arguments.
        unsafe { check(ffi::pd_profile_start())? };
        Ok(ProfileSession {
            finished: false,
            _this_thread: std::marker::PhantomData,
        })
    }

    /// Ends the profile: the shim's text (see `pd_profile_stop` in shim.h).
    pub fn finish(mut self) -> Result<String, ShimError> {
        self.finished = true;
        call_for_string(ffi::pd_profile_stop)
    }
}

impl Drop for ProfileSession {
    fn drop(&mut self) {
        if !self.finished {
            let _ = call_for_string(ffi::pd_profile_stop);
        }
    }
}

/// How forward() uses each of its arguments first, as the shim reads it
/// from the inlined graph (`pd_forward_input_uses` in shim.h). What that
/// makes the input is decided in `crate::inputs`.
pub mod graph {
    use super::{check, ShimError};
    use std::ffi::c_char;

    /// shim.h's PD_MAX_WEIGHT_DIMS.
    const MAX_WEIGHT_DIMS: usize = 8;

    #[repr(C)]
    struct PdInputUse {
        kind: i32,
        weight_dims: i32,
        weight_shape: [i64; MAX_WEIGHT_DIMS],
        dim: i64,
        groups: i64,
        transposed: i32,
        batch_first: i32,
        rank: i32,
        rank_change_known: i32,
        rank_change: i32,
        op_rank: i32,
        op: *mut c_char,
        weight: *mut c_char,
        name: *mut c_char,
    }

    #[repr(C)]
    struct PdEmbeddingTable {
        rows: i64,
        indices_from_arange: i32,
        weight: *mut c_char,
    }

    extern "C" {
        fn pd_forward_input_uses(
            data: *const c_char,
            len: usize,
            uses: *mut *mut PdInputUse,
            num_uses: *mut i64,
            tables: *mut *mut PdEmbeddingTable,
            num_tables: *mut i64,
        ) -> *mut c_char;
        fn pd_free_input_uses(
            uses: *mut PdInputUse,
            num_uses: i64,
            tables: *mut PdEmbeddingTable,
            num_tables: i64,
        );
    }

    /// The operator that first tells what an input must be.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum UseKind {
        /// None found: the walk met no telling operator, or stopped at one
        /// it does not follow (`InputUse::op`).
        Undecided,
        /// aten::embedding, or index_select/index on a weight: token ids.
        Embedding,
        Convolution,
        /// aten::linear, or matmul/mm with a weight.
        Linear,
        /// aten::lstm, gru, rnn_tanh or rnn_relu.
        Recurrent,
        LayerNorm,
        /// Added to, multiplied with, ... another tensor: a mask, typically.
        Arithmetic,
        /// aten::stft: a waveform (no weight).
        Waveform,
    }

    impl UseKind {
        fn from_c(kind: i32) -> UseKind {
            match kind {
                1 => UseKind::Embedding,
                2 => UseKind::Convolution,
                3 => UseKind::Linear,
                4 => UseKind::Recurrent,
                5 => UseKind::LayerNorm,
                6 => UseKind::Arithmetic,
                7 => UseKind::Waveform,
                _ => UseKind::Undecided,
            }
        }
    }

    /// How forward() uses one argument first.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct InputUse {
        /// The argument's name in forward()'s signature.
        pub name: Option<String>,
        pub kind: UseKind,
        /// The operator that decided it, or where the walk stopped.
        pub op: Option<String>,
        /// The weight that operator reads: its attribute path from the model
        /// ("emb.weight"; None for a frozen model's constant) and its shape.
        /// For a recurrent layer weight_ih_l0's, for LayerNorm the
        /// normalized shape. None when it could not be read.
        pub weight: Option<String>,
        pub weight_shape: Option<Vec<i64>>,
        /// The weight's dimension index_select indexes (0 otherwise).
        pub dim: i64,
        /// A convolution's groups (1 when not a constant).
        pub groups: i64,
        /// A transposed convolution; a matmul's weight laid out [in, out].
        pub transposed: bool,
        /// A recurrent layer's batch_first.
        pub batch_first: bool,
        /// The rank forward() unpacks the input's size() into.
        pub rank: Option<usize>,
        /// The deciding operator's input rank minus the input's own, where
        /// the view operators on the way say (`x[:, None]`: +1).
        pub rank_change: Option<i32>,
        /// The deciding operator's input rank as the operators after it
        /// imply (a squeeze(1) then an LSTM after a linear layer: 4).
        pub op_rank: Option<usize>,
    }

    /// An embedding table forward() reads.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct EmbeddingTable {
        pub weight: Option<String>,
        pub rows: i64,
        /// Its indices come from aten::arange: a table of positions.
        pub indices_from_arange: bool,
    }

    /// What the forward graph of the model whose file holds `bytes` says.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct GraphUses {
        /// One per forward() argument, self not counted.
        pub inputs: Vec<InputUse>,
        pub embedding_tables: Vec<EmbeddingTable>,
    }

    /// Reads how forward() uses its inputs.
    pub fn input_uses(bytes: &[u8]) -> Result<GraphUses, ShimError> {
        let mut uses: *mut PdInputUse = std::ptr::null_mut();
        let mut num_uses: i64 = 0;
        let mut tables: *mut PdEmbeddingTable = std::ptr::null_mut();
        let mut num_tables: i64 = 0;
        // SAFETY: the shim copies `bytes` before reading them; on success it
        // hands over two calloc'd arrays of the given lengths, whose strings
        // are copied here before pd_free_input_uses frees them all.
        unsafe {
            check(pd_forward_input_uses(
                bytes.as_ptr().cast(),
                bytes.len(),
                &mut uses,
                &mut num_uses,
                &mut tables,
                &mut num_tables,
            ))?;
            let copy = |p: *mut c_char| {
                (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
            };
            let mut inputs = Vec::new();
            for i in 0..num_uses.max(0) as usize {
                let u = &*uses.add(i);
                let dims = u.weight_dims.clamp(0, MAX_WEIGHT_DIMS as i32) as usize;
                inputs.push(InputUse {
                    name: copy(u.name),
                    kind: UseKind::from_c(u.kind),
                    op: copy(u.op),
                    weight: copy(u.weight),
                    weight_shape: (dims > 0).then(|| u.weight_shape[..dims].to_vec()),
                    dim: u.dim,
                    groups: u.groups.max(1),
                    transposed: u.transposed != 0,
                    batch_first: u.batch_first != 0,
                    rank: (u.rank > 0).then_some(u.rank as usize),
                    rank_change: (u.rank_change_known != 0).then_some(u.rank_change),
                    op_rank: (u.op_rank > 0).then_some(u.op_rank as usize),
                });
            }
            let mut embedding_tables = Vec::new();
            for i in 0..num_tables.max(0) as usize {
                let t = &*tables.add(i);
                embedding_tables.push(EmbeddingTable {
                    weight: copy(t.weight),
                    rows: t.rows,
                    indices_from_arange: t.indices_from_arange != 0,
                });
            }
            pd_free_input_uses(uses, num_uses, tables, num_tables);
            Ok(GraphUses {
                inputs,
                embedding_tables,
            })
        }
    }
}

/// The floating-point types a model is cast to or autocast in, as
/// c10::ScalarType codes (include/c10/core/ScalarType.h; tch keeps its own
/// mapping private).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatType {
    Float32,
    Float16,
    Bfloat16,
}

impl FloatType {
    fn code(self) -> c_int {
        match self {
            FloatType::Float16 => 5,
            FloatType::Float32 => 6,
            FloatType::Bfloat16 => 15,
        }
    }

    /// The type of `kind`; None for a kind no model is cast to.
    pub fn of(kind: tch::Kind) -> Option<FloatType> {
        match kind {
            tch::Kind::Float => Some(FloatType::Float32),
            tch::Kind::Half => Some(FloatType::Float16),
            tch::Kind::BFloat16 => Some(FloatType::Bfloat16),
            _ => None,
        }
    }
}

/// The TorchScript model in `bytes` (its file's), with its floating-point
/// parameters and buffers cast to `to` and the others (integer indices,
/// bool masks) as they are, as PyTorch's `nn.Module.to` does (libtorch's
/// C++ `Module::to(dtype)`, which tch's `CModule::to` calls, converts every
/// tensor); the cast model's file bytes, on the CPU.
pub fn cast_floating(bytes: &[u8], to: FloatType) -> Result<Vec<u8>, ShimError> {
    let mut out: *mut c_char = std::ptr::null_mut();
    let mut len = 0_usize;
    // SAFETY: `bytes` outlives the call; on success the shim hands over a
    // malloc'd buffer of `len` bytes, copied here and then freed.
    unsafe {
        check(ffi::pd_cast_floating(
            bytes.as_ptr() as *const c_char,
            bytes.len(),
            to.code(),
            &mut out,
            &mut len,
        ))?;
        let cast = if out.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(out as *const u8, len).to_vec()
        };
        ffi::pd_free_string(out);
        Ok(cast)
    }
}

/// libtorch's autocast on for the calling thread while this lives, as
/// `torch.autocast(device_type, dtype)` is inside its `with` block: the
/// state before comes back on drop, and the autocast cache (weights cast
/// during the region) is cleared when the outermost region ends.
pub struct AutocastGuard {
    cuda: c_int,
    saved: [c_int; 3],
    /// Autocast is thread-local state: not `Send`.
    _this_thread: std::marker::PhantomData<*const ()>,
}

impl AutocastGuard {
    /// Autocast to `to` on the CPU (`cuda` false) or on CUDA devices.
    pub fn enter(cuda: bool, to: FloatType) -> Result<AutocastGuard, ShimError> {
        let mut saved = [0 as c_int; 3];
        let cuda = c_int::from(cuda);
        // SAFETY: `saved` has the three slots the shim writes.
        unsafe { check(ffi::pd_autocast_enter(cuda, to.code(), saved.as_mut_ptr()))? };
        Ok(AutocastGuard {
            cuda,
            saved,
            _this_thread: std::marker::PhantomData,
        })
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        // SAFETY: the state `enter` saved, on the same thread (not Send).
        // Restoring plain thread-local flags does not fail in practice; if
        // libtorch threw, there is no one to tell on drop.
        let _ = unsafe { check(ffi::pd_autocast_exit(self.cuda, self.saved.as_ptr())) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_gpu_the_allocator_statistics_are_an_error_not_a_crash() {
        if tch::Cuda::is_available() {
            return crate::skip::skip(
                "this machine has a CUDA device: the statistics without one are not seen here",
            );
        }
        let e = cuda_memory(0).unwrap_err();
        eprintln!("cuda_memory(0) without a GPU: {e}");
        assert!(matches!(e, ShimError::Libtorch(_)), "{e:?}");
        let e = e.to_string();
        assert!(!e.is_empty());
        // Nothing loaded libtorch_cuda in this test process.
        assert!(e.contains("no CUDA caching allocator"), "{e}");
        if cfg!(precisiond_libtorch_cuda) {
            // Loaded at run time the way a worker on a GPU machine loads
            // it, libtorch_cuda registers the real CUDA caching allocator:
            // c10's device-generic interface reaches it, and it refuses
            // device 0 because there is none ("Invalid device argument").
            // Only the numbers on a real GPU are untested here.
            std::env::set_var(crate::cuda::FORCE_LOAD_VAR, "1");
            let load = crate::cuda::load_libtorch_cuda();
            assert!(matches!(load, crate::cuda::CudaLoad::Loaded(_)), "{load:?}");
            let e = cuda_memory(0).unwrap_err().to_string();
            assert!(!e.contains("no CUDA caching allocator"), "{e}");
        }
        let e = cuda_start_memory_window(0).unwrap_err();
        eprintln!("cuda_start_memory_window(0) without a GPU: {e}");
    }
}
