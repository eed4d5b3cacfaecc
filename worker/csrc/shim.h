// C ABI between precisiond (Rust) and the few libtorch APIs that tch does not
// wrap. Every function catches every C++ exception: a non-NULL returned
// `char*` is an error message owned by the caller (free it with
// pd_free_string).
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void pd_free_string(char *s);

// libtorch's version string, e.g. "2.13.0". Static storage.
const char *pd_libtorch_version(void);

// libtorch's CPU kernel level ("AVX512", "DEFAULT", ...) into *out.
char *pd_cpu_capability(char **out);

// Quantized engines libtorch was built with, comma separated ("x86,fbgemm,onednn,qnnpack").
char *pd_supported_qengines(char **out);

// Facts about a TorchScript model, given as the `len` bytes of its file at
// `data`: the number of forward() arguments (without self), how many of them
// have no default, and whether its graphs call quantized:: operators.
char *pd_module_info(const char *data, size_t len, int64_t *num_inputs, int64_t *num_required,
                     int *has_quantized_ops);

// From now on, libtorch's warnings (TORCH_WARN) are collected instead of
// printed; pd_take_warnings hands over (and forgets) those seen so far,
// newline separated.
void pd_collect_warnings(void);
char *pd_take_warnings(char **out);

// Makes `engine` ("x86", "fbgemm", "qnnpack", "onednn") libtorch's quantized engine.
char *pd_set_qengine(const char *engine);

// Static post-training quantization of the TorchScript model whose file's
// `model_len` bytes are at `model_data` (the bytes that were hashed, never a
// path that could be swapped meanwhile), through libtorch's graph-mode passes (what PyTorch's quantize_jit does):
// fold conv-bn, insert observers, run the calibration batches, insert
// quant/dequant, finalize, constant-propagate, eliminate dead code; then
// save to out_path. `tensors` holds num_batches * inputs_per_batch pointers
// to torch::Tensor (tch's C_tensor), batch after batch.
// libtorch's warnings during the passes come back in *warnings (newline
// separated; free with pd_free_string), whether or not it failed.
char *pd_quantize_static(const char *model_data, size_t model_len, const char *out_path,
                         const char *engine,
                         void *const *tensors, int64_t num_batches, int64_t inputs_per_batch,
                         char **warnings);

// Reads a file written by Python's torch.save holding a tensor or a
// tuple/list of tensors. *tensors (free with pd_free_pointer_array) holds
// *count new torch::Tensor pointers, each owned by the caller.
char *pd_load_pickled_tensors(const char *path, void ***tensors, int64_t *count);
void pd_free_pointer_array(void **array);

// libtorch's CUDA caching allocator on CUDA device `device`: bytes handed
// out to tensors now and at their peak since the last window start, and
// bytes reserved from the driver now and at their peak. An error when
// libtorch has no CUDA allocator (CPU-only libtorch, libtorch_cuda not loaded).
char *pd_cuda_memory_stats(int device, int64_t *allocated, int64_t *peak_allocated,
                           int64_t *reserved, int64_t *peak_reserved);
// Starts a measurement window: returns cached free blocks to the driver
// (emptyCache) and resets the peaks to the current values.
char *pd_cuda_start_memory_window(int device);

// Operator profile of what this thread runs between pd_profile_start and
// pd_profile_stop, through libtorch's RecordFunction callbacks (present
// whether or not libtorch was built with Kineto). Only operators dispatched
// from the calling thread are recorded: work an intra-op thread does inside
// a kernel is part of that kernel's time. pd_profile_stop removes the
// callback (also after an error) and hands over, one line each, tab separated:
//   op  NAME  CALLS  TOTAL_NS  SELF_NS   (one per distinct operator, in order of first call)
//   top INDEX TOTAL_NS                   (one per outermost call, in call order; INDEX into the op lines)
// Self time is an operator's own: its time less the time of the operators it called.
char *pd_profile_start(void);
char *pd_profile_stop(char **out);

// An AOTInductor package (.pt2 from torch._inductor.aoti_compile_and_package)
// at `path`, loaded through torch::inductor::AOTIModelPackageLoader (model
// "model", the name aoti_compile_and_package gives), into *handle (free
// with pd_aoti_free). libtorch unpacks it into a temporary folder and
// dlopens its compiled code: the caller checks first that this CPU can run
// that code.
char *pd_aoti_load(const char *path, void **handle);
// Runs the package on `num_inputs` torch::Tensor pointers; *outputs (free
// with pd_free_pointer_array) holds *count new torch::Tensor pointers, each
// owned by the caller.
char *pd_aoti_run(void *handle, void *const *inputs, int64_t num_inputs, void ***outputs,
                  int64_t *count);
void pd_aoti_free(void *handle);

#ifdef __cplusplus
}
#endif
