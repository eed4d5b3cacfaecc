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

// The initial states of forward's RNN layers that the graph makes with a
// constant floating-point dtype (a traced nn.LSTM's zeros): one line
// "RNN_OP FACTORY_OP DTYPE" each, e.g. "aten::lstm aten::zeros Float".
char *pd_rnn_constant_state_dtypes(const char *data, size_t len, char **out);

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
// A model whose submodules' methods take a module as an argument (which
// the passes refuse) is quantized from its forward inlined:
// *inlined_methods says how many such methods there were (0: none).
// *kinds: "KIND COUNT" lines, the node kinds of the quantized forward
// (inlined), on success (free with pd_free_string).
// libtorch's warnings during the passes come back in *warnings (newline
// separated; free with pd_free_string), whether or not it failed.
char *pd_quantize_static(const char *model_data, size_t model_len, const char *out_path,
                         const char *engine,
                         void *const *tensors, int64_t num_batches, int64_t inputs_per_batch,
                         int64_t *inlined_methods, char **kinds, char **warnings);

// Dynamic post-training quantization (what PyTorch's quantize_dynamic_jit
// does): int8 weights, activations quantized at run time by the kernels;
// no calibration. Otherwise as pd_quantize_static.
char *pd_quantize_dynamic(const char *model_data, size_t model_len, const char *out_path,
                          const char *engine, int64_t *inlined_methods, char **kinds,
                          char **warnings);

// "KIND COUNT" lines: the node kinds of the model's forward, inlined.
char *pd_forward_kinds(const char *data, size_t len, char **out);

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

// How forward() uses each of its arguments first, read from its graph
// (submodule calls inlined, constants propagated): the input is followed
// through operators that keep it the same tensor (to, contiguous, dropout,
// view/reshape/unsqueeze/permute/transpose/slice, arithmetic with scalars;
// size() and dim() are no uses) to the first operator that tells what it
// must be. The weight that operator reads is found through the prim::GetAttr
// chain from `self` and its shape given.
enum {
  PD_USE_UNDECIDED = 0,  // no telling operator; `op` names where the walk stopped, if anywhere
  PD_USE_EMBEDDING = 1,  // aten::embedding (or index_select/index on a weight): token ids
  PD_USE_CONVOLUTION = 2,
  PD_USE_LINEAR = 3,     // aten::linear, or matmul/mm with a weight (`transposed`: [in, out])
  PD_USE_RECURRENT = 4,  // aten::lstm/gru/rnn_tanh/rnn_relu: weight_shape is weight_ih_l0's
  PD_USE_LAYER_NORM = 5, // weight_shape is the normalized shape
  PD_USE_ARITHMETIC = 6, // added to, multiplied with, ... another tensor (a mask, typically)
  PD_USE_WAVEFORM = 7,   // aten::stft: a waveform, no weight
};

#define PD_MAX_WEIGHT_DIMS 8

typedef struct PdInputUse {
  int32_t kind;          // PD_USE_*
  int32_t weight_dims;   // entries of weight_shape in use; 0 when its weight could not be read
  int64_t weight_shape[PD_MAX_WEIGHT_DIMS];
  int64_t dim;           // the weight's dimension indexed by index_select (0 otherwise)
  int64_t groups;        // convolution groups (1 when not a constant)
  int32_t transposed;    // transposed convolution; matmul with a [in, out] weight
  int32_t batch_first;   // recurrent: the op's batch_first argument
  int32_t rank;          // rank forward() unpacks the input's size() into, 0 when not seen
  int32_t rank_change_known; // 1 when rank_change is known
  int32_t rank_change;   // the deciding operator's input rank minus the input's own (unsqueeze: +1)
  int32_t op_rank;       // the deciding operator's input rank as later operators imply it, 0 if not
  char *op;              // the deciding operator (or where the walk stopped), or NULL
  char *weight;          // attribute path of the weight read ("emb.weight"), or NULL
  char *name;            // the argument's name in forward()'s schema, or NULL
} PdInputUse;

// An embedding table forward() reads (aten::embedding), whatever indexes it.
typedef struct PdEmbeddingTable {
  int64_t rows;
  int32_t indices_from_arange; // its indices come from aten::arange: positions
  char *weight;                // attribute path, or NULL
} PdEmbeddingTable;

// *uses gets *num_uses entries, one per forward() argument (without self);
// *tables the embedding tables. Free both with pd_free_input_uses.
char *pd_forward_input_uses(const char *data, size_t len, PdInputUse **uses, int64_t *num_uses,
                            PdEmbeddingTable **tables, int64_t *num_tables);
void pd_free_input_uses(PdInputUse *uses, int64_t num_uses, PdEmbeddingTable *tables,
                        int64_t num_tables);

// The TorchScript model whose file's `len` bytes are at `data`, with every
// floating-point parameter and buffer (of every submodule) cast to the
// c10::ScalarType `dtype` and every other one (integer indices, bool masks)
// left as it is: the rule of PyTorch's nn.Module.to, where libtorch's C++
// Module::to(dtype) converts every tensor. Saved into *out (free with
// pd_free_string), *out_len bytes, on the CPU: loading those bytes on a
// device moves every tensor there.
char *pd_cast_floating(const char *data, size_t len, int dtype, char **out, size_t *out_len);

// Autocast for the calling thread, as torch.autocast's __enter__ and
// __exit__: on the CPU (`cuda` 0) or CUDA devices (`cuda` 1), to the
// c10::ScalarType `dtype`. Enter saves the state before into saved[0..3];
// exit restores it, clearing the autocast cache when the outermost region
// ends. Call both on the same thread, exit once for each enter.
char *pd_autocast_enter(int cuda, int dtype, int *saved);
char *pd_autocast_exit(int cuda, const int *saved);
// The operator namespaces the model's code calls (`ops.NS.name(` in the
// archive's code/ records), from the `len` bytes of its file at `data`,
// without loading it: newline separated, sorted, into *out.
char *pd_op_namespaces(const char *data, size_t len, char **out);
// Whether libtorch has any operator of namespace `ns` registered (its own,
// or one an operator library registered when it was loaded).
char *pd_op_namespace_registered(const char *ns, int *registered);

#ifdef __cplusplus
}
#endif
