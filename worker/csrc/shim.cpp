// The only C++ in precisiond: libtorch APIs that tch does not wrap, behind a
// C ABI. Every entry point runs its body inside `guarded`, so no C++
// exception ever crosses into Rust; it comes back as an error string.
#include "shim.h"

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <ATen/Version.h>
#include <ATen/record_function.h>
#if __has_include(<torch/headeronly/version.h>)
#include <torch/headeronly/version.h>
#else
#include <torch/version.h>
#endif
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/fold_conv_bn.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/quantization/finalize.h>
#include <torch/csrc/jit/passes/quantization/insert_observers.h>
#include <torch/csrc/jit/passes/quantization/insert_quant_dequant.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/jit/runtime/operator.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/script.h>
#include <torch/serialize.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <sstream>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <algorithm>
#include <optional>
#include <map>
#include <unordered_map>
#include <unordered_set>
#include <vector>
#include <cstring>
#include <set>
#include <string>

namespace {

char *copy_string(const std::string &s) {
  char *out = static_cast<char *>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

template <typename F> char *guarded(F &&body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error &e) {
    // what_without_backtrace: the user-facing message, not libtorch's C++ stack.
    return copy_string(e.what_without_backtrace());
  } catch (const std::exception &e) {
    return copy_string(e.what());
  } catch (...) {
    return copy_string("unknown C++ exception in libtorch");
  }
}

// A model from the bytes of its file. The caller read and hashed those
// bytes once; loading them, not the path again, means what is measured and
// quantized is exactly what was hashed.
torch::jit::Module load_from_bytes(const char *data, size_t len) {
  std::istringstream stream(std::string(data, len), std::ios::binary);
  return torch::jit::load(stream);
}

// Hands `found` to Rust as a malloc'd array of new torch::Tensor pointers
// (tch frees a C_tensor with `delete`; the array goes to pd_free_pointer_array).
void hand_over(const std::vector<torch::Tensor> &found, void ***tensors, int64_t *count) {
  void **out = static_cast<void **>(std::malloc(sizeof(void *) * found.size()));
  if (out == nullptr && !found.empty()) {
    throw std::bad_alloc();
  }
  for (size_t i = 0; i < found.size(); ++i) {
    out[i] = new torch::Tensor(found[i]);
  }
  *tensors = out;
  *count = static_cast<int64_t>(found.size());
}

bool block_calls_quantized(const torch::jit::Block *block) {
  for (const torch::jit::Node *node : block->nodes()) {
    if (std::strncmp(node->kind().toQualString(), "quantized::", 11) == 0) {
      return true;
    }
    for (const torch::jit::Block *inner : node->blocks()) {
      if (block_calls_quantized(inner)) {
        return true;
      }
    }
  }
  return false;
}

bool module_calls_quantized(const torch::jit::Module &module) {
  for (const auto &sub : module.modules()) {
    for (const auto &method : sub.get_methods()) {
      if (block_calls_quantized(method.graph()->block())) {
        return true;
      }
    }
  }
  return false;
}

// libtorch's InsertQuantDeQuant dequantizes a tuple of quantized tensors as
// one value: a traced transformer's `return (last_hidden_state,
// pooler_output)` ends in aten::dequantize(TupleConstruct(a, b)). In memory
// the node keeps the tuple type, but it is saved as `torch.dequantize((a,
// b))`, which the loader binds to the list overload dequantize.tensors, so
// the saved model does not load ("Return value was annotated as having
// type Tuple[Tensor, Tensor] but is actually of type List[Tensor]"). The
// tuple is rebuilt from its elements, each dequantized by itself.
torch::jit::Value *dequantized(torch::jit::Graph &graph, torch::jit::Value *value) {
  const c10::TupleTypePtr tuple = value->type()->cast<c10::TupleType>();
  if (!tuple) {
    if (value->type()->cast<c10::TensorType>() || value->type()->isSubtypeOf(*c10::ListType::ofTensors())) {
      return graph.insert(c10::aten::dequantize, {value});
    }
    return value; // None or a scalar: nothing quantized to undo.
  }
  std::vector<torch::jit::Value *> elements;
  torch::jit::Node *producer = value->node();
  if (producer->kind() == c10::prim::TupleConstruct) {
    elements.assign(producer->inputs().begin(), producer->inputs().end());
  } else {
    torch::jit::Node *unpack = graph.insertNode(graph.createTupleUnpack(value));
    elements.assign(unpack->outputs().begin(), unpack->outputs().end());
  }
  for (torch::jit::Value *&element : elements) {
    element = dequantized(graph, element);
  }
  return graph.insertNode(graph.createTuple(elements))->output();
}

void collect_tuple_dequantizes(torch::jit::Block *block, std::vector<torch::jit::Node *> &found) {
  for (torch::jit::Node *node : block->nodes()) {
    if (node->kind() == c10::aten::dequantize && node->inputs().size() == 1 &&
        node->input()->type()->cast<c10::TupleType>()) {
      found.push_back(node);
    }
    for (torch::jit::Block *inner : node->blocks()) {
      collect_tuple_dequantizes(inner, found);
    }
  }
}

// Every method of every module type (the passes leave submodule methods
// that are saved with the model even when forward no longer calls them).
void dequantize_tuples_elementwise(const torch::jit::Module &module) {
  std::unordered_set<const torch::jit::Graph *> seen;
  for (const auto &sub : module.modules()) {
    for (const auto &method : sub.get_methods()) {
      const std::shared_ptr<torch::jit::Graph> graph = method.graph();
      if (!seen.insert(graph.get()).second) {
        continue;
      }
      std::vector<torch::jit::Node *> found;
      collect_tuple_dequantizes(graph->block(), found);
      for (torch::jit::Node *node : found) {
        torch::jit::WithInsertPoint point(node);
        torch::jit::Value *rebuilt = dequantized(*graph, node->input());
        node->output()->replaceAllUsesWith(rebuilt);
        node->destroy();
      }
      if (!found.empty()) {
        torch::jit::EliminateDeadCode(graph);
      }
    }
  }
}

// Observers, written as TorchScript and compiled with Module::define. The
// quantization passes read `dtype`, `qscheme` (and `ch_axis`) from them and
// call `calculate_qparams`.

// Weights: per-output-channel symmetric qint8, as PyTorch's x86 default
// (PerChannelMinMaxObserver, qint8, per_channel_symmetric).
const char *kWeightObserverSource = R"JIT(
def forward(self, x: Tensor) -> Tensor:
    y = x.detach().float().transpose(0, self.ch_axis).flatten(1)
    lo = torch.amin(y, 1)
    hi = torch.amax(y, 1)
    if self.min_val.numel() == 0:
        self.min_val = lo
        self.max_val = hi
    else:
        self.min_val = torch.min(lo, self.min_val)
        self.max_val = torch.max(hi, self.max_val)
    return x

def calculate_qparams(self) -> Tuple[Tensor, Tensor]:
    amax = torch.max(-torch.clamp(self.min_val, max=0.0), torch.clamp(self.max_val, min=0.0))
    # qint8 [-128, 127]: (quant_max - quant_min) / 2 = 127.5
    scale = torch.clamp(amax / 127.5, min=1.1920928955078125e-07)
    zero_point = torch.zeros_like(scale).long()
    return scale, zero_point
)JIT";

// Activations: per-tensor affine quint8 from a running histogram, with the
// range chosen by minimising the L2 quantization error over the histogram,
// the method of PyTorch's HistogramObserver (its default for the x86 and
// fbgemm engines). Min-max ranges waste most of the 8 bits on rare
// outliers; this search trims them when that lowers the error.
const char *kActivationObserverSource = R"JIT(
def forward(self, x_orig: Tensor) -> Tensor:
    if x_orig.numel() == 0:
        return x_orig
    x = x_orig.detach().float()
    lo = torch.min(x)
    hi = torch.max(x)
    if self.histogram.numel() == 0:
        self.min_val = lo
        self.max_val = hi
        self.histogram = torch.histc(x, self.bins, float(lo), float(hi))
        return x_orig
    new_lo = torch.min(lo, self.min_val)
    new_hi = torch.max(hi, self.max_val)
    if bool(new_lo < self.min_val) or bool(new_hi > self.max_val):
        # The range grew: move the old counts into the new, wider bins.
        old_width = (self.max_val - self.min_val) / self.bins
        centers = self.min_val + (torch.arange(self.bins).float() + 0.5) * old_width
        new_width = (new_hi - new_lo) / self.bins
        index = torch.clamp(torch.floor((centers - new_lo) / new_width), 0, self.bins - 1).long()
        self.histogram = torch.bincount(index, self.histogram, self.bins).float()
        self.min_val = new_lo
        self.max_val = new_hi
    self.histogram = self.histogram + torch.histc(x, self.bins, float(self.min_val), float(self.max_val))
    return x_orig

def _norm(self, delta_begin: Tensor, delta_end: Tensor, density: Tensor) -> Tensor:
    return density * (delta_end * delta_end * delta_end - delta_begin * delta_begin * delta_begin) / 3.0

def _quantization_error(self, start_bin: int, end_bin: int) -> float:
    bin_width = (float(self.max_val) - float(self.min_val)) / self.bins
    dst_bin_width = bin_width * (end_bin - start_bin + 1) / self.dst_nbins
    if dst_bin_width == 0.0:
        return 0.0
    src_bin = torch.arange(self.bins).float()
    src_begin = (src_bin - start_bin) * bin_width
    src_end = src_begin + bin_width
    dst_of_begin = torch.clamp(torch.floor(src_begin / dst_bin_width), 0, self.dst_nbins - 1)
    dst_of_begin_center = (dst_of_begin + 0.5) * dst_bin_width
    dst_of_end = torch.clamp(torch.floor(src_end / dst_bin_width), 0, self.dst_nbins - 1)
    density = self.histogram / bin_width
    half = torch.full_like(src_bin, dst_bin_width / 2.0)
    norm = self._norm(src_begin - dst_of_begin_center, half, density)
    norm = norm + (dst_of_end - dst_of_begin - 1.0) * self._norm(-half, half, density)
    dst_of_end_center = dst_of_end * dst_bin_width + dst_bin_width / 2.0
    norm = norm + self._norm(-half, src_end - dst_of_end_center, density)
    return float(norm.sum())

def _search_range(self) -> Tuple[float, float]:
    total = float(self.histogram.sum())
    csum: List[float] = torch.cumsum(self.histogram, 0).tolist()
    stepsize = 1e-5
    alpha = 0.0
    beta = 1.0
    start_bin = 0
    end_bin = self.bins - 1
    norm_min = float("inf")
    while alpha < beta:
        next_alpha = alpha + stepsize
        next_beta = beta - stepsize
        l = start_bin
        r = end_bin
        while l < end_bin and csum[l] <= next_alpha * total:
            l = l + 1
        while r > start_bin and csum[r] >= next_beta * total:
            r = r - 1
        next_start = start_bin
        next_end = end_bin
        if (l - start_bin) > (end_bin - r):
            next_start = l
            alpha = next_alpha
        else:
            next_end = r
            beta = next_beta
        if next_start == start_bin and next_end == end_bin:
            continue
        norm = self._quantization_error(next_start, next_end)
        if norm > norm_min:
            break
        norm_min = norm
        start_bin = next_start
        end_bin = next_end
    bin_width = (float(self.max_val) - float(self.min_val)) / self.bins
    return float(self.min_val) + bin_width * start_bin, float(self.min_val) + bin_width * (end_bin + 1)

def calculate_qparams(self) -> Tuple[Tensor, Tensor]:
    if self.histogram.numel() == 0:
        return torch.ones(1).float(), torch.zeros(1).long()
    lo = float(self.min_val)
    hi = float(self.max_val)
    if hi > lo:
        lo, hi = self._search_range()
    lo = min(lo, 0.0)
    hi = max(hi, 0.0)
    scale = max((hi - lo) / float(self.quant_max - self.quant_min), 1.1920928955078125e-07)
    zero_point = self.quant_min - int(round(lo / scale))
    zero_point = max(self.quant_min, min(self.quant_max, zero_point))
    return torch.ones(1).float() * scale, torch.ones(1).long() * zero_point
)JIT";

torch::jit::Module weight_observer() {
  torch::jit::Module obs("__torch__.precisiond.PerChannelWeightObserver");
  obs.register_attribute("min_val", c10::TensorType::get(), torch::empty({0}));
  obs.register_attribute("max_val", c10::TensorType::get(), torch::empty({0}));
  obs.register_attribute("ch_axis", c10::IntType::get(), static_cast<int64_t>(0));
  obs.register_attribute("dtype", c10::IntType::get(), static_cast<int64_t>(at::kQInt8));
  obs.register_attribute("qscheme", c10::IntType::get(),
                         static_cast<int64_t>(at::kPerChannelSymmetric));
  obs.define(kWeightObserverSource);
  return obs;
}

torch::jit::Module activation_observer(bool reduce_range) {
  torch::jit::Module obs("__torch__.precisiond.HistogramActivationObserver");
  obs.register_attribute("histogram", c10::TensorType::get(), torch::empty({0}));
  obs.register_attribute("min_val", c10::TensorType::get(), torch::zeros({}));
  obs.register_attribute("max_val", c10::TensorType::get(), torch::zeros({}));
  obs.register_attribute("bins", c10::IntType::get(), static_cast<int64_t>(2048));
  // The search works in 8-bit destination bins even when the range is
  // reduced, as PyTorch's observer does.
  obs.register_attribute("dst_nbins", c10::IntType::get(), static_cast<int64_t>(256));
  obs.register_attribute("quant_min", c10::IntType::get(), static_cast<int64_t>(0));
  // fbgemm/x86 kernels accumulate in 16 bits in places: 7-bit activations
  // avoid their saturation (PyTorch's reduce_range=True).
  obs.register_attribute("quant_max", c10::IntType::get(),
                         static_cast<int64_t>(reduce_range ? 127 : 255));
  obs.register_attribute("dtype", c10::IntType::get(), static_cast<int64_t>(at::kQUInt8));
  obs.register_attribute("qscheme", c10::IntType::get(),
                         static_cast<int64_t>(at::kPerTensorAffine));
  obs.define(kActivationObserverSource);
  return obs;
}

// Dynamic quantization's activation "observer": activations are
// quantized at run time (the quantized kernels choose their range per
// call), so it records nothing; the passes read only its dtype and qscheme,
// as from PyTorch's PlaceholderObserver(dtype=quint8, is_dynamic=True).
const char *kDynamicActivationObserverSource = R"JIT(
def forward(self, x: Tensor) -> Tensor:
    return x

def calculate_qparams(self) -> Tuple[Tensor, Tensor]:
    return torch.ones(1).float(), torch.zeros(1).long()
)JIT";

torch::jit::Module dynamic_activation_observer() {
  torch::jit::Module obs("__torch__.precisiond.DynamicActivationObserver");
  obs.register_attribute("dtype", c10::IntType::get(), static_cast<int64_t>(at::kQUInt8));
  obs.register_attribute("qscheme", c10::IntType::get(),
                         static_cast<int64_t>(at::kPerTensorAffine));
  obs.register_attribute("is_dynamic", c10::BoolType::get(), true);
  obs.define(kDynamicActivationObserverSource);
  return obs;
}

bool takes_a_module(const torch::jit::Method &method) {
  const auto &arguments = method.function().getSchema().arguments();
  // The first argument is `self`.
  for (size_t i = 1; i < arguments.size(); ++i) {
    if (arguments[i].type()->cast<c10::ClassType>()) {
      return true;
    }
  }
  return false;
}

// The quantization passes clone every method of every module type and
// refuse one that takes a module as an argument ("We don't support
// quantizing methods that has Object as arguments"). Tracing writes such
// methods where one module instance is the child of several parents:
// ultralytics' Conv shares one class-level `default_act = nn.SiLU()`, and
// each traced Conv.forward takes that SiLU as an argument. Such a model is
// quantized from its forward graph inlined (no submodule method is called
// any more, as PyTorch's on-device quantize_jit path does too), with the
// methods that take a module removed from their types: nothing calls them.
// Returns how many methods were removed (0: the model was left as it is).
int64_t inline_methods_taking_modules(torch::jit::Module &model) {
  std::vector<std::pair<c10::ClassTypePtr, std::string>> offending;
  std::unordered_set<const c10::ClassType *> seen;
  for (const auto &sub : model.modules()) {
    const c10::ClassTypePtr type = sub.type();
    if (!seen.insert(type.get()).second) {
      continue;
    }
    for (const auto &method : sub.get_methods()) {
      if (takes_a_module(method)) {
        offending.emplace_back(type, method.name());
      }
    }
  }
  if (offending.empty()) {
    return 0;
  }
  for (const auto &[type, name] : offending) {
    if (type == model.type()) {
      throw std::runtime_error("the model's own method " + name +
                               "() takes a module as an argument");
    }
  }
  torch::jit::Inline(*model.get_method("forward").graph());
  for (const auto &[type, name] : offending) {
    type->unsafeRemoveMethod(name);
  }
  return static_cast<int64_t>(offending.size());
}

// How many nodes of each kind the graph runs, inner blocks included.
void count_kinds(const torch::jit::Block *block, std::map<std::string, int64_t> &counts) {
  for (const torch::jit::Node *node : block->nodes()) {
    counts[node->kind().toQualString()] += 1;
    for (const torch::jit::Block *inner : node->blocks()) {
      count_kinds(inner, counts);
    }
  }
}

// "KIND COUNT" lines for the nodes of `module`'s forward, inlined (on a
// copy of its graph: the module is left as it is).
std::string forward_kinds(const torch::jit::Module &module) {
  std::shared_ptr<torch::jit::Graph> graph = module.get_method("forward").graph()->copy();
  torch::jit::Inline(*graph);
  std::map<std::string, int64_t> counts;
  count_kinds(graph->block(), counts);
  std::string lines;
  for (const auto &[kind, count] : counts) {
    lines += kind + " " + std::to_string(count) + "\n";
  }
  return lines;
}

// Collects libtorch's warnings (TORCH_WARN) instead of printing them, so
// the report can record them: torch 2.13 warns that quantized tensor
// creation is deprecated, and that is worth knowing, not hiding.
class CollectingWarningHandler : public c10::WarningHandler {
public:
  void process(const c10::Warning &warning) override {
    // The message's first line: a warning made from a caught exception
    // (mkldnn_matmul's bf16 fallback on ARM, say) carries its C++
    // backtrace after it, which says nothing to a report's reader.
    const std::string message = warning.msg();
    const std::string text = message.substr(0, message.find('\n'));
    for (const std::string &seen : messages) {
      if (seen == text) {
        return;
      }
    }
    messages.push_back(text);
  }
  std::vector<std::string> messages;
};

at::QEngine parse_engine(const std::string &name) {
  for (const at::QEngine engine : at::globalContext().supportedQEngines()) {
    std::string candidate = c10::toString(engine);
    for (char &c : candidate) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    if (candidate == name) {
      return engine;
    }
  }
  throw std::runtime_error("libtorch has no quantized engine named '" + name + "'");
}

} // namespace

extern "C" {

void pd_free_string(char *s) { std::free(s); }

const char *pd_libtorch_version(void) { return TORCH_VERSION; }

char *pd_cpu_capability(char **out) {
  return guarded([&] { *out = copy_string(at::get_cpu_capability()); });
}

char *pd_supported_qengines(char **out) {
  return guarded([&] {
    std::string names;
    for (const at::QEngine engine : at::globalContext().supportedQEngines()) {
      if (!names.empty()) {
        names += ",";
      }
      std::string name = c10::toString(engine);
      for (char &c : name) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      names += name;
    }
    *out = copy_string(names);
  });
}

char *pd_module_info(const char *data, size_t len, int64_t *num_inputs, int64_t *num_required,
                     int *has_quantized_ops) {
  return guarded([&] {
    torch::jit::Module module = load_from_bytes(data, len);
    const auto &arguments = module.get_method("forward").function().getSchema().arguments();
    // The first argument is `self`.
    *num_inputs = static_cast<int64_t>(arguments.size()) - 1;
    *num_required = 0;
    for (size_t i = 1; i < arguments.size(); ++i) {
      if (!arguments[i].default_value().has_value()) {
        *num_required += 1;
      }
    }
    *has_quantized_ops = module_calls_quantized(module) ? 1 : 0;
  });
}

// Tracing nn.LSTM/GRU/RNN without an initial state records the zeros it
// makes as `aten::zeros(..., dtype=<the input's dtype at trace time>)`: a
// constant. Cast to FP16/BF16, the input and weights follow and the state
// stays float32, which neither oneDNN's RNN nor the native one accepts.
// One line "RNN_OP FACTORY_OP DTYPE" per such state in forward (inlined).
char *pd_rnn_constant_state_dtypes(const char *data, size_t len, char **out) {
  *out = nullptr;
  return guarded([&] {
    torch::jit::Module module = load_from_bytes(data, len);
    std::shared_ptr<torch::jit::Graph> graph = module.get_method("forward").graph()->copy();
    torch::jit::Inline(*graph);
    const std::unordered_set<c10::Symbol> rnns{c10::aten::lstm, c10::aten::gru,
                                               c10::aten::rnn_tanh, c10::aten::rnn_relu};
    std::string lines;
    std::vector<const torch::jit::Block *> blocks{graph->block()};
    while (!blocks.empty()) {
      const torch::jit::Block *block = blocks.back();
      blocks.pop_back();
      for (const torch::jit::Node *node : block->nodes()) {
        for (const torch::jit::Block *inner : node->blocks()) {
          blocks.push_back(inner);
        }
        if (rnns.count(node->kind()) == 0 || node->inputs().size() < 2) {
          continue;
        }
        // The state is the second argument: a tensor, or LSTM's [h0, c0].
        std::vector<const torch::jit::Value *> states{node->input(1)};
        if (node->input(1)->node()->kind() == c10::prim::ListConstruct) {
          states.assign(node->input(1)->node()->inputs().begin(),
                        node->input(1)->node()->inputs().end());
        }
        for (const torch::jit::Value *state : states) {
          const torch::jit::Node *factory = state->node();
          const auto &schema = factory->maybeSchema();
          if (schema == nullptr || !schema->argumentIndexWithName("dtype")) {
            continue;
          }
          const std::optional<c10::IValue> dtype =
              torch::jit::toIValue(factory->input(*schema->argumentIndexWithName("dtype")));
          if (!dtype || !dtype->isInt()) {
            continue;
          }
          const auto type = static_cast<c10::ScalarType>(dtype->toInt());
          if (c10::isFloatingType(type)) {
            lines += std::string(node->kind().toQualString()) + " " +
                     factory->kind().toQualString() + " " + c10::toString(type) + "\n";
          }
        }
      }
    }
    *out = copy_string(lines);
  });
}

} // extern "C"

extern "C" {

namespace {
CollectingWarningHandler *process_warnings = nullptr;
}

void pd_collect_warnings(void) {
  // Process-wide: libtorch's warnings go into the report, not onto stderr.
  if (process_warnings == nullptr) {
    process_warnings = new CollectingWarningHandler();
    c10::WarningUtils::set_warning_handler(process_warnings);
  }
}

char *pd_take_warnings(char **out) {
  return guarded([&] {
    std::string joined;
    if (process_warnings != nullptr) {
      for (const std::string &message : process_warnings->messages) {
        joined += message;
        joined += "\n";
      }
      process_warnings->messages.clear();
    }
    *out = copy_string(joined);
  });
}

char *pd_set_qengine(const char *engine) {
  return guarded([&] { at::globalContext().setQEngine(parse_engine(engine)); });
}

} // extern "C"

namespace {

// The model from its bytes, eval mode, conv-bn folded, and inlined where
// the passes would refuse its methods (inline_methods_taking_modules):
// the first steps of PyTorch's quantize_jit, both modes.
torch::jit::Module quantizable(const char *model_data, size_t model_len,
                               int64_t *inlined_methods) {
  torch::jit::Module model = load_from_bytes(model_data, model_len);
  model.eval();
  torch::jit::Module folded = torch::jit::FoldConvBatchNorm(model);
  *inlined_methods = inline_methods_taking_modules(folded);
  return folded;
}

// The last steps of both modes: quant/dequant inserted, finalized,
// constants propagated; refused if nothing runs quantized.
torch::jit::Module converted(torch::jit::Module &observed, torch::jit::QuantType mode,
                             const char *nothing_quantized) {
  torch::jit::Module quantized = torch::jit::InsertQuantDeQuant(
      observed, "forward", /*inplace=*/false, /*debug=*/false, mode);
  quantized = torch::jit::Finalize(quantized, mode, {});
  dequantize_tuples_elementwise(quantized);
  auto graph = quantized.get_method("forward").graph();
  torch::jit::ConstantPropagation(graph);
  torch::jit::EliminateDeadCode(graph);
  if (!module_calls_quantized(quantized)) {
    throw std::runtime_error(nothing_quantized);
  }
  return quantized;
}

template <typename F>
char *with_warnings(char **warnings, F &&body) {
  *warnings = nullptr;
  CollectingWarningHandler collector;
  c10::WarningUtils::WarningHandlerGuard guard(&collector);
  char *error = guarded(body);
  std::string joined;
  for (const std::string &message : collector.messages) {
    joined += message;
    joined += "\n";
  }
  *warnings = copy_string(joined);
  return error;
}

} // namespace

extern "C" {

char *pd_quantize_static(const char *model_data, size_t model_len, const char *out_path,
                         const char *engine,
                         void *const *tensors, int64_t num_batches, int64_t inputs_per_batch,
                         int64_t *inlined_methods, char **kinds, char **warnings) {
  *kinds = nullptr;
  return with_warnings(warnings, [&] {
    const std::string engine_name(engine);
    at::globalContext().setQEngine(parse_engine(engine_name));
    torch::NoGradGuard no_grad;

    // What PyTorch's quantize_jit does, step by step (torch/ao/quantization/quantize_jit.py).
    torch::jit::Module folded = quantizable(model_data, model_len, inlined_methods);
    const bool reduce_range = engine_name == "x86" || engine_name == "fbgemm";
    torch::jit::QConfigDict qconfig{
        {"", std::make_tuple(activation_observer(reduce_range), weight_observer())}};
    torch::jit::Module observed = torch::jit::InsertObservers(
        folded, "forward", qconfig, /*inplace=*/false, torch::jit::QuantType::STATIC);

    for (int64_t b = 0; b < num_batches; ++b) {
      std::vector<torch::jit::IValue> args;
      for (int64_t i = 0; i < inputs_per_batch; ++i) {
        args.emplace_back(*static_cast<const torch::Tensor *>(tensors[b * inputs_per_batch + i]));
      }
      observed.forward(args);
    }

    torch::jit::Module quantized = converted(
        observed, torch::jit::QuantType::STATIC,
        "the model has no layer libtorch can quantize (no convolution or linear layer in a "
        "supported pattern), so INT8 would run as FP32");
    *kinds = copy_string(forward_kinds(quantized));
    quantized.save(out_path);
  });
}

char *pd_quantize_dynamic(const char *model_data, size_t model_len, const char *out_path,
                          const char *engine, int64_t *inlined_methods, char **kinds,
                          char **warnings) {
  *kinds = nullptr;
  return with_warnings(warnings, [&] {
    at::globalContext().setQEngine(parse_engine(engine));
    torch::NoGradGuard no_grad;
    // What PyTorch's quantize_dynamic_jit does with per_channel_dynamic_qconfig:
    // no calibration; the weights' observers run during the conversion.
    torch::jit::Module folded = quantizable(model_data, model_len, inlined_methods);
    torch::jit::QConfigDict qconfig{
        {"", std::make_tuple(dynamic_activation_observer(), weight_observer())}};
    torch::jit::Module observed = torch::jit::InsertObservers(
        folded, "forward", qconfig, /*inplace=*/false, torch::jit::QuantType::DYNAMIC);
    torch::jit::Module quantized = converted(
        observed, torch::jit::QuantType::DYNAMIC,
        "the model has no layer libtorch quantizes dynamically (no linear layer), so INT8 "
        "would run as FP32");
    *kinds = copy_string(forward_kinds(quantized));
    quantized.save(out_path);
  });
}

char *pd_forward_kinds(const char *data, size_t len, char **out) {
  *out = nullptr;
  return guarded([&] { *out = copy_string(forward_kinds(load_from_bytes(data, len))); });
}

char *pd_load_pickled_tensors(const char *path, void ***tensors, int64_t *count) {
  *tensors = nullptr;
  *count = 0;
  return guarded([&] {
    std::ifstream file(path, std::ios::binary);
    if (!file) {
      throw std::runtime_error("cannot open the file");
    }
    std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    // torch.save from Python writes a pickle (in a zip); pickle_load reads it.
    const torch::IValue value = torch::pickle_load(bytes);
    std::vector<torch::Tensor> found;
    if (value.isTensor()) {
      found.push_back(value.toTensor());
    } else if (value.isTuple()) {
      for (const auto &item : value.toTupleRef().elements()) {
        found.push_back(item.toTensor());
      }
    } else if (value.isList()) {
      for (const auto &item : value.toListRef()) {
        found.push_back(item.toTensor());
      }
    } else {
      throw std::runtime_error("expected a tensor, or a tuple or list of tensors, got " +
                               value.tagKind());
    }
    hand_over(found, tensors, count);
  });
}

void pd_free_pointer_array(void **array) { std::free(array); }

// libtorch's CUDA caching allocator, through the device-generic interface
// in c10/core (CPU headers only: the shim needs no CUDA headers to build).
// libc10_cuda registers the allocator when it is loaded; without it (a
// CPU-only libtorch, or libtorch_cuda not linked) this is an error. Older
// libtorch (Debian's 2.6) has no such interface: build.rs leaves
// PRECISIOND_DEVICE_ALLOCATOR undefined and the figures are unavailable.
#ifdef PRECISIOND_DEVICE_ALLOCATOR
static c10::DeviceAllocator *cuda_device_allocator() {
  auto *device_allocator =
      dynamic_cast<c10::DeviceAllocator *>(c10::GetAllocator(c10::DeviceType::CUDA));
  if (device_allocator == nullptr) {
    throw std::runtime_error(
        "libtorch has no CUDA caching allocator here (libtorch_cuda is not loaded)");
  }
  return device_allocator;
}

char *pd_cuda_memory_stats(int device, int64_t *allocated, int64_t *peak_allocated,
                           int64_t *reserved, int64_t *peak_reserved) {
  return guarded([&] {
    const auto stats =
        cuda_device_allocator()->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *allocated = stats.allocated_bytes[all].current;
    *peak_allocated = stats.allocated_bytes[all].peak;
    *reserved = stats.reserved_bytes[all].current;
    *peak_reserved = stats.reserved_bytes[all].peak;
  });
}

char *pd_cuda_start_memory_window(int device) {
  return guarded([&] {
    auto *allocator = cuda_device_allocator();
    // Cached blocks freed by the previous precision go back to the driver,
    // so the reserved figures describe this precision.
    allocator->emptyCache();
    allocator->resetPeakStats(static_cast<c10::DeviceIndex>(device));
  });
}
#else
static char *no_device_allocator() {
  return guarded([] {
    throw std::runtime_error("libtorch " TORCH_VERSION " has no device-generic allocator "
                             "interface: peak device memory needs a newer libtorch");
  });
}

char *pd_cuda_memory_stats(int, int64_t *, int64_t *, int64_t *, int64_t *) {
  return no_device_allocator();
}

char *pd_cuda_start_memory_window(int) { return no_device_allocator(); }
#endif

} // extern "C"

// ---- Operator profile -------------------------------------------------
//
// A thread-local callback, not a global one: a forward() call dispatches its
// operators from the calling thread, and an operator's time there already
// covers the intra-op threads it waits for. Recording those threads too
// would count the same wall time twice and break "self = total - children",
// which needs one stack of open operators per thread.
namespace {

using profile_clock = std::chrono::steady_clock;

struct OpenCall {
  size_t index;
  profile_clock::time_point start;
  int64_t children_ns;
};

struct OpTotals {
  std::string name;
  int64_t calls = 0;
  int64_t total_ns = 0;
  int64_t self_ns = 0;
};

struct ProfileSession {
  at::CallbackHandle handle = 0;
  std::unordered_map<std::string, size_t> index_of;
  std::vector<OpTotals> ops;
  std::vector<OpenCall> stack;
  // (index, total_ns) of each outermost call, in order.
  std::vector<std::pair<size_t, int64_t>> top_level;
};

// The session of this thread; callbacks on any other thread find none.
thread_local std::unique_ptr<ProfileSession> profile_session;

std::unique_ptr<at::ObserverContext> profile_enter(const at::RecordFunction &fn) {
  ProfileSession *s = profile_session.get();
  if (s != nullptr) {
    const std::string name(fn.name());
    auto found = s->index_of.find(name);
    size_t index;
    if (found == s->index_of.end()) {
      index = s->ops.size();
      s->index_of.emplace(name, index);
      s->ops.push_back(OpTotals{name});
    } else {
      index = found->second;
    }
    s->stack.push_back(OpenCall{index, profile_clock::now(), 0});
  }
  return nullptr;
}

void profile_exit(const at::RecordFunction &, at::ObserverContext *) {
  const auto now = profile_clock::now();
  ProfileSession *s = profile_session.get();
  if (s == nullptr || s->stack.empty()) {
    return; // an operator that was open before the session started
  }
  const OpenCall call = s->stack.back();
  s->stack.pop_back();
  const int64_t total =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now - call.start).count();
  OpTotals &op = s->ops[call.index];
  op.calls += 1;
  op.total_ns += total;
  op.self_ns += total - call.children_ns;
  if (s->stack.empty()) {
    s->top_level.emplace_back(call.index, total);
  } else {
    s->stack.back().children_ns += total;
  }
}

// Removes this thread's callback and forgets its session, on every path.
struct EndProfileSession {
  ~EndProfileSession() {
    if (!profile_session) {
      return;
    }
    try {
      if (profile_session->handle != at::INVALID_CALLBACK_HANDLE) {
        at::removeCallback(profile_session->handle);
      }
    } catch (...) {
      // A destructor must not throw; the session is forgotten below either way.
    }
    profile_session.reset();
  }
};

} // namespace

extern "C" {

char *pd_profile_start(void) {
  return guarded([] {
    if (profile_session) {
      throw std::runtime_error("an operator profile is already running on this thread");
    }
    auto session = std::make_unique<ProfileSession>();
    // Operators only (not TorchScript function scopes or user scopes), and
    // no inputs: copying them would slow every call down.
    session->handle = at::addThreadLocalCallback(
        at::RecordFunctionCallback(profile_enter, profile_exit)
            .needsInputs(false)
            .scopes({at::RecordScope::FUNCTION}));
    profile_session = std::move(session);
  });
}

char *pd_profile_stop(char **out) {
  *out = nullptr;
  EndProfileSession end;
  return guarded([&] {
    if (!profile_session) {
      throw std::runtime_error("no operator profile is running on this thread");
    }
    // Callbacks first: nothing may record into the session while it is read.
    at::removeCallback(profile_session->handle);
    profile_session->handle = at::INVALID_CALLBACK_HANDLE;
    std::ostringstream text;
    for (const OpTotals &op : profile_session->ops) {
      text << "op\t" << op.name << "\t" << op.calls << "\t" << op.total_ns << "\t" << op.self_ns
           << "\n";
    }
    for (const auto &[index, total_ns] : profile_session->top_level) {
      text << "top\t" << index << "\t" << total_ns << "\n";
    }
    *out = copy_string(text.str());
    profile_session.reset();
  });
}

char *pd_aoti_load(const char *path, void **handle) {
  *handle = nullptr;
  return guarded([&] {
    // (path, model name): the constructor both libtorch 2.6 and 2.13 have.
    *handle = new torch::inductor::AOTIModelPackageLoader(path, "model");
  });
}

char *pd_aoti_run(void *handle, void *const *inputs, int64_t num_inputs, void ***outputs,
                  int64_t *count) {
  *outputs = nullptr;
  *count = 0;
  return guarded([&] {
    auto *loader = static_cast<torch::inductor::AOTIModelPackageLoader *>(handle);
    std::vector<torch::Tensor> args;
    args.reserve(static_cast<size_t>(num_inputs));
    for (int64_t i = 0; i < num_inputs; ++i) {
      args.push_back(*static_cast<const torch::Tensor *>(inputs[i]));
    }
    hand_over(loader->run(args), outputs, count);
  });
}

char *pd_cast_floating(const char *data, size_t len, int dtype, char **out, size_t *out_len) {
  *out = nullptr;
  *out_len = 0;
  return guarded([&] {
    const auto kind = static_cast<at::ScalarType>(dtype);
    torch::jit::Module module = load_from_bytes(data, len);
    // Module::to's own step (module_state_to: a new tensor, then set_data,
    // so every reference to the attribute sees it), for floating-point
    // tensors only. parameters() and buffers() walk every submodule.
    auto cast = [&](const at::Tensor &t) {
      if (t.is_floating_point() && t.scalar_type() != kind) {
        t.set_data(t.to(kind));
      }
    };
    for (const at::Tensor &p : module.parameters()) {
      cast(p);
    }
    for (const at::Tensor &b : module.buffers()) {
      cast(b);
    }
    std::ostringstream stream(std::ios::binary);
    module.save(stream);
    const std::string bytes = stream.str();
    char *copy = static_cast<char *>(std::malloc(bytes.size()));
    if (copy == nullptr && !bytes.empty()) {
      throw std::bad_alloc();
    }
    std::memcpy(copy, bytes.data(), bytes.size());
    *out = copy;
    *out_len = bytes.size();
  });
}

namespace {
at::DeviceType autocast_device(int cuda) { return cuda != 0 ? at::kCUDA : at::kCPU; }
} // namespace

char *pd_autocast_enter(int cuda, int dtype, int *saved) {
  return guarded([&] {
    const at::DeviceType device = autocast_device(cuda);
    // What torch.autocast's __enter__ does, in its order.
    saved[0] = at::autocast::is_autocast_enabled(device) ? 1 : 0;
    saved[1] = static_cast<int>(at::autocast::get_autocast_dtype(device));
    saved[2] = at::autocast::is_autocast_cache_enabled() ? 1 : 0;
    at::autocast::set_autocast_enabled(device, true);
    at::autocast::set_autocast_dtype(device, static_cast<at::ScalarType>(dtype));
    at::autocast::increment_nesting();
    at::autocast::set_autocast_cache_enabled(true);
  });
}

char *pd_autocast_exit(int cuda, const int *saved) {
  return guarded([&] {
    const at::DeviceType device = autocast_device(cuda);
    // torch.autocast's __exit__: the cast weights are dropped when the
    // outermost region ends, then the state before is restored.
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(device, saved[0] != 0);
    at::autocast::set_autocast_dtype(device, static_cast<at::ScalarType>(saved[1]));
    at::autocast::set_autocast_cache_enabled(saved[2] != 0);
  });
}

void pd_aoti_free(void *handle) {
  // The destructor removes the unpacked folder; it must not throw into Rust.
  try {
    delete static_cast<torch::inductor::AOTIModelPackageLoader *>(handle);
  } catch (...) {
  }
}

} // extern "C"

// ---- How forward() uses its inputs --------------------------------------
//
// One pass over the inlined forward graph per input, in node order (the
// graph is topologically ordered, so the first telling node met is the
// first use): `tracked` holds the values that are still the input (reshaped,
// retyped), `derived` everything computed from it. The decision what the
// input must be is Rust's (worker/src/inputs.rs); this only reads the graph.
namespace {

using torch::jit::Block;
using torch::jit::Node;
using torch::jit::Value;

// An operator's name, the in-place form (add_) read as the plain one (add).
std::string op_name(const Node *node) {
  std::string name = node->kind().toQualString();
  if (name.size() > 2 && name.back() == '_' && name[name.size() - 2] != '_') {
    name.pop_back();
  }
  return name;
}

// Operators whose output is the input itself, reshaped, retyped or cut:
// what it must be is told by whatever consumes that output.
bool keeps_the_tensor(const std::string &op) {
  static const std::unordered_set<std::string> ops = {
      "aten::to",          "aten::type_as",     "aten::contiguous",   "aten::dropout",
      "aten::feature_dropout", "aten::alpha_dropout", "aten::feature_alpha_dropout",
      "aten::detach",      "aten::clone",       "aten::view",         "aten::reshape",
      "aten::view_as",     "aten::reshape_as",  "aten::flatten",      "aten::unflatten",
      "aten::unsqueeze",   "aten::squeeze",     "aten::permute",      "aten::transpose",
      "aten::t",           "aten::expand",      "aten::expand_as",    "aten::slice",
      "aten::narrow",      "aten::constant_pad_nd", "aten::pad",      "aten::float",
      "aten::half",        "aten::double",      "aten::long",         "aten::int",
      "aten::movedim",     "aten::swapaxes",    "aten::neg",          "aten::abs",
  };
  return ops.count(op) != 0;
}

// Element-wise arithmetic: the input stays itself when every other tensor
// operand is a scalar (or computed from the input itself, as in x - x.mean()).
bool is_arithmetic(const std::string &op) {
  static const std::unordered_set<std::string> ops = {
      "aten::add",       "aten::sub",        "aten::mul",       "aten::div",
      "aten::rsub",      "aten::true_divide", "aten::floor_divide", "aten::remainder",
      "aten::pow",       "aten::clamp",      "aten::clamp_min", "aten::clamp_max",
  };
  return ops.count(op) != 0;
}

// Uses that read only facts about the input, not its values.
bool is_no_use(const std::string &op) {
  static const std::unordered_set<std::string> ops = {
      "aten::size",   "aten::dim",     "aten::len",     "aten::numel",   "prim::shape",
      "prim::device", "prim::dtype",   "prim::layout",  "aten::__is__",  "aten::__isnot__",
      "prim::isinstance", "aten::is_floating_point", "aten::is_contiguous", "prim::is_cuda",
      "aten::device", "prim::requires_grad",
  };
  return ops.count(op) != 0;
}

// How much `node` (one of keeps_the_tensor's operators, or arithmetic)
// changes the rank of its first input: unsqueeze adds one, squeeze(dim)
// takes one, flatten(start, end) takes end - start. None where the graph
// does not say (view/reshape/expand to a computed shape, squeeze of every
// size-1 dimension).
bool is_tensor(const Value *value) {
  return value->type()->isSubtypeOf(*c10::TensorType::get());
}

std::optional<int64_t> constant_int(const Value *value) {
  return torch::jit::constant_as<int64_t>(value);
}

std::optional<std::vector<int64_t>> constant_ints(const Value *value) {
  if (value->node()->kind() == c10::prim::ListConstruct) {
    std::vector<int64_t> out;
    for (const Value *item : value->node()->inputs()) {
      auto v = constant_int(item);
      if (!v) {
        return std::nullopt;
      }
      out.push_back(*v);
    }
    return out;
  }
  auto iv = torch::jit::toIValue(value);
  if (iv && iv->isIntList()) {
    return iv->toIntVector();
  }
  return std::nullopt;
}

// How much `node` (one of keeps_the_tensor's operators, or arithmetic)
// changes the rank of its first input: unsqueeze adds one, squeeze(dim)
// takes one, flatten(start, end) takes end - start. None where the graph
// does not say (view/reshape/expand to a computed shape, squeeze of every
// size-1 dimension).
std::optional<int> rank_step(const Node *node, const std::string &op) {
  const auto &in = node->inputs();
  if (op == "aten::unsqueeze") {
    return 1;
  }
  if (op == "aten::squeeze") {
    if (in.size() < 2) {
      return std::nullopt; // every size-1 dimension: as many as the input has
    }
    if (constant_int(in[1])) {
      return -1;
    }
    if (auto dims = constant_ints(in[1])) {
      return -static_cast<int>(dims->size());
    }
    return std::nullopt;
  }
  if (op == "aten::flatten") {
    if (in.size() < 3) {
      return std::nullopt;
    }
    auto start = constant_int(in[1]);
    auto end = constant_int(in[2]);
    if (start && end && ((*start >= 0) == (*end >= 0))) {
      return -static_cast<int>(*end - *start);
    }
    return std::nullopt;
  }
  if (op == "aten::unflatten") {
    if (in.size() < 3) {
      return std::nullopt;
    }
    if (in[2]->node()->kind() == c10::prim::ListConstruct) {
      return static_cast<int>(in[2]->node()->inputs().size()) - 1;
    }
    if (auto sizes = constant_ints(in[2])) {
      return static_cast<int>(sizes->size()) - 1;
    }
    return std::nullopt;
  }
  static const std::unordered_set<std::string> to_a_computed_shape = {
      "aten::view", "aten::reshape", "aten::view_as", "aten::reshape_as",
      "aten::expand", "aten::expand_as",
  };
  if (to_a_computed_shape.count(op) != 0) {
    return std::nullopt;
  }
  return 0;
}

// Element-wise operators that keep the rank of what they are given, met
// after the deciding operator on the way to one that implies a rank.
bool keeps_the_rank(const std::string &op) {
  static const std::unordered_set<std::string> ops = {
      "aten::relu",    "aten::hardtanh", "aten::gelu",     "aten::sigmoid",  "aten::tanh",
      "aten::silu",    "aten::elu",      "aten::leaky_relu", "aten::relu6",  "aten::hardswish",
      "aten::softmax", "aten::log_softmax", "aten::layer_norm", "aten::batch_norm",
      "aten::linear",
  };
  return ops.count(op) != 0;
}

struct Weight {
  std::vector<int64_t> shape;
  std::string name; // empty for a constant (a frozen model's weight)
};

std::string joined(const std::vector<std::string> &path) {
  std::string out;
  for (const std::string &name : path) {
    if (!out.empty()) {
      out += ".";
    }
    out += name;
  }
  return out;
}

// Reads the model's weights through the prim::GetAttr chains from `self`.
struct Weights {
  const torch::jit::Module &module;
  const Value *self;

  std::optional<std::pair<c10::IValue, std::string>> attribute(const Value *value) const {
    std::vector<std::string> path;
    while (value != self) {
      const Node *node = value->node();
      if (node->kind() != c10::prim::GetAttr) {
        return std::nullopt;
      }
      path.push_back(node->s(c10::attr::name));
      value = node->input(0);
    }
    std::reverse(path.begin(), path.end());
    c10::IValue current = module._ivalue();
    for (const std::string &name : path) {
      if (!current.isObject()) {
        return std::nullopt;
      }
      auto object = current.toObject();
      if (!object->type()->hasAttribute(name)) {
        return std::nullopt;
      }
      current = object->getAttr(name);
    }
    return std::make_pair(current, joined(path));
  }

  std::optional<Weight> tensor(const Value *value) const {
    if (value->node()->kind() == c10::prim::Constant) {
      auto iv = torch::jit::toIValue(value);
      if (iv && iv->isTensor()) {
        return Weight{iv->toTensor().sizes().vec(), ""};
      }
      return std::nullopt;
    }
    auto found = attribute(value);
    if (!found || !found->first.isTensor()) {
      return std::nullopt;
    }
    return Weight{found->first.toTensor().sizes().vec(), found->second};
  }

  // The first tensor of a list of weights (a recurrent layer's parameters).
  std::optional<Weight> first_of_list(const Value *value) const {
    const Node *node = value->node();
    if (node->kind() == c10::prim::ListConstruct) {
      if (node->inputs().empty()) {
        return std::nullopt;
      }
      return tensor(node->input(0));
    }
    auto found = attribute(value);
    if (!found || !found->first.isList()) {
      return std::nullopt;
    }
    auto list = found->first.toListRef();
    if (list.empty() || !list[0].isTensor()) {
      return std::nullopt;
    }
    return Weight{list[0].toTensor().sizes().vec(), found->second + "[0]"};
  }
};

struct Use {
  int32_t kind = PD_USE_UNDECIDED;
  std::optional<Weight> weight;
  int64_t dim = 0;
  int64_t groups = 1;
  bool transposed = false;
  bool batch_first = false;
  int32_t rank = 0;
  std::optional<int> rank_change; // the deciding operator's input rank minus the input's
  const Node *node = nullptr;     // the deciding operator
  std::string op;
};

bool is_overload(const Node *node, const char *overload) {
  const c10::FunctionSchema *schema = node->maybeSchema();
  return schema != nullptr && schema->overload_name() == overload;
}

class InputWalk {
public:
  InputWalk(const Weights &weights, const Value *input) : weights_(weights) {
    tracked_.insert(input);
    derived_.insert(input);
    offsets_[input] = 0;
  }

  // Walks `block` in order; true once the use is decided (or the walk stopped).
  bool walk(const Block *block) {
    for (const Node *node : block->nodes()) {
      if (visit(node)) {
        return true;
      }
    }
    return false;
  }

  Use use;

private:
  const Weights &weights_;
  std::unordered_set<const Value *> tracked_;
  std::unordered_set<const Value *> derived_;
  std::unordered_set<const Value *> lists_; // lists holding a tracked value
  // A tracked value's rank minus the input's, where the ops on the way say.
  std::unordered_map<const Value *, std::optional<int>> offsets_;

  bool tracked(const Value *v) const { return tracked_.count(v) != 0; }

  std::optional<int> offset(const Value *v) const {
    auto found = offsets_.find(v);
    return found == offsets_.end() ? std::nullopt : found->second;
  }

  // The offset of the first tracked input of `node`.
  std::optional<int> tracked_offset(const Node *node) const {
    for (const Value *in : node->inputs()) {
      if (tracked(in)) {
        return offset(in);
      }
    }
    return std::nullopt;
  }

  void derive_outputs(const Node *node) {
    for (const Value *out : node->outputs()) {
      derived_.insert(out);
    }
  }

  // The operator tells; Rust decides what an unread weight means.
  bool decide(int32_t kind, const Node *node, std::optional<Weight> weight) {
    use.kind = kind;
    use.weight = std::move(weight);
    use.op = op_name(node);
    use.node = node;
    use.rank_change = tracked_offset(node);
    return true;
  }

  bool stop(const Node *node) {
    use.kind = PD_USE_UNDECIDED;
    use.op = op_name(node);
    return true;
  }

  bool visit(const Node *node) {
    bool any_tracked = false;
    bool any_list = false;
    bool any_derived = false;
    for (const Value *in : node->inputs()) {
      any_tracked = any_tracked || tracked(in);
      any_list = any_list || lists_.count(in) != 0;
      any_derived = any_derived || derived_.count(in) != 0;
    }
    if (node->kind() == c10::prim::If) {
      for (const Block *inner : node->blocks()) {
        if (walk(inner)) {
          return true;
        }
      }
      // The If's result is the input where a branch returns it.
      for (size_t i = 0; i < node->outputs().size(); ++i) {
        for (const Block *inner : node->blocks()) {
          const Value *ret = inner->outputs()[i];
          if (tracked(ret)) {
            const Value *out = node->outputs()[i];
            // Branches that disagree on the rank leave it unknown.
            auto seen = offsets_.find(out);
            if (!tracked(out)) {
              offsets_[out] = offset(ret);
            } else if (seen != offsets_.end() && seen->second != offset(ret)) {
              seen->second = std::nullopt;
            }
            tracked_.insert(out);
          }
          if (derived_.count(ret) != 0) {
            derived_.insert(node->outputs()[i]);
          }
        }
      }
      return false;
    }
    if (!node->blocks().empty()) {
      // A loop that carries the input along: beyond this walk.
      if (any_tracked || any_list) {
        return stop(node);
      }
      for (const Block *inner : node->blocks()) {
        if (walk(inner)) {
          return true;
        }
      }
      if (any_derived) {
        derive_outputs(node);
      }
      return false;
    }
    if (!any_tracked && !any_list) {
      if (any_derived) {
        derive_outputs(node);
      }
      return false;
    }
    const std::string op = op_name(node);
    const auto &in = node->inputs();
    auto at = [&](size_t i) { return i < in.size() && tracked(in[i]); };
    if (is_no_use(op)) {
      // `a, b, c = x.size()`: forward expects the input to have that rank.
      if (op == "aten::size" && in.size() == 1) {
        for (const torch::jit::Use &u : node->output()->uses()) {
          if (u.user->kind() == c10::prim::ListUnpack) {
            use.rank = static_cast<int32_t>(u.user->outputs().size());
          }
        }
      }
      return false;
    }
    if (op == "prim::ListConstruct") {
      for (const Value *out : node->outputs()) {
        lists_.insert(out);
      }
      derive_outputs(node);
      return false;
    }
    if ((op == "aten::embedding" || op == "aten::embedding_bag") && at(1)) {
      return decide(PD_USE_EMBEDDING, node, weights_.tensor(in[0]));
    }
    if (op == "aten::index_select" && at(2)) {
      use.dim = constant_int(in[1]).value_or(0);
      return decide(PD_USE_EMBEDDING, node, weights_.tensor(in[0]));
    }
    if (op == "aten::index" && !at(0) && in.size() == 2 && lists_.count(in[1]) != 0) {
      return decide(PD_USE_EMBEDDING, node, weights_.tensor(in[0]));
    }
    if ((op == "aten::conv1d" || op == "aten::conv2d" || op == "aten::conv3d") && at(0)) {
      use.groups = in.size() > 6 ? constant_int(in[6]).value_or(1) : 1;
      return decide(PD_USE_CONVOLUTION, node, weights_.tensor(in[1]));
    }
    if ((op == "aten::conv_transpose1d" || op == "aten::conv_transpose2d" ||
         op == "aten::conv_transpose3d") &&
        at(0)) {
      use.groups = in.size() > 6 ? constant_int(in[6]).value_or(1) : 1;
      use.transposed = true;
      return decide(PD_USE_CONVOLUTION, node, weights_.tensor(in[1]));
    }
    if ((op == "aten::_convolution" || op == "aten::convolution") && at(0) && in.size() > 8) {
      use.transposed = torch::jit::constant_as<bool>(in[6]).value_or(false);
      use.groups = constant_int(in[8]).value_or(1);
      return decide(PD_USE_CONVOLUTION, node, weights_.tensor(in[1]));
    }
    if (op == "aten::linear" && at(0)) {
      return decide(PD_USE_LINEAR, node, weights_.tensor(in[1]));
    }
    if ((op == "aten::matmul" || op == "aten::mm") && at(0) && !at(1)) {
      use.transposed = true;
      auto weight = weights_.tensor(in[1]);
      if (weight) {
        return decide(PD_USE_LINEAR, node, weight);
      }
      return stop(node);
    }
    if ((op == "aten::lstm" || op == "aten::gru" || op == "aten::rnn_tanh" ||
         op == "aten::rnn_relu") &&
        at(0) && is_overload(node, "input") && in.size() > 8) {
      use.batch_first = torch::jit::constant_as<bool>(in[8]).value_or(false);
      return decide(PD_USE_RECURRENT, node, weights_.first_of_list(in[2]));
    }
    if (op == "aten::layer_norm" && at(0)) {
      auto weight = in.size() > 2 ? weights_.tensor(in[2]) : std::nullopt;
      if (!weight) {
        if (auto shape = constant_ints(in[1])) {
          weight = Weight{*shape, ""};
        }
      }
      return decide(PD_USE_LAYER_NORM, node, weight);
    }
    if (is_arithmetic(op)) {
      bool alone = true;
      for (const Value *other : in) {
        if (!is_tensor(other) || derived_.count(other) != 0) {
          continue;
        }
        if (other->node()->kind() == c10::prim::Constant) {
          auto iv = torch::jit::toIValue(other);
          if (iv && iv->isTensor() && iv->toTensor().numel() == 1) {
            continue;
          }
        }
        alone = false;
      }
      if (!alone) {
        use.kind = PD_USE_ARITHMETIC;
        use.op = op;
        return true;
      }
      tracked_.insert(node->output());
      offsets_[node->output()] = tracked_offset(node);
      derive_outputs(node);
      return false;
    }
    if (op == "aten::stft" && at(0)) {
      return decide(PD_USE_WAVEFORM, node, std::nullopt);
    }
    if (keeps_the_tensor(op) && at(0)) {
      tracked_.insert(node->output());
      auto before = offset(in[0]);
      auto step = rank_step(node, op);
      offsets_[node->output()] =
          before && step ? std::optional<int>(*before + *step) : std::nullopt;
      derive_outputs(node);
      return false;
    }
    return stop(node);
  }
};

// The rank `start` (the deciding operator's input) must have, as the
// operators after it imply: its output followed through operators that keep
// the rank or change it by a known amount to one that needs a rank (a
// recurrent layer: 3, a convolution, permute, size() unpacked). 0 where
// nothing says. DeepSpeech's linear layers take [batch, channel, time,
// features] and only the squeeze(1) and LSTM after them tell.
int32_t implied_rank(const Block *block, const Node *decided) {
  std::unordered_map<const Value *, int> followed; // rank minus the decided input's
  followed[decided->output()] = 0;
  bool after = false;
  for (const Node *node : block->nodes()) {
    if (node == decided) {
      after = true;
      continue;
    }
    if (!after) {
      continue;
    }
    std::optional<int> at;
    size_t index = 0;
    for (size_t i = 0; i < node->inputs().size(); ++i) {
      auto found = followed.find(node->input(i));
      if (found != followed.end()) {
        at = found->second;
        index = i;
        break;
      }
    }
    if (!at) {
      continue;
    }
    const std::string op = op_name(node);
    const auto &in = node->inputs();
    if (!node->blocks().empty()) {
      return 0;
    }
    if (op == "aten::size" && in.size() == 1) {
      for (const torch::jit::Use &u : node->output()->uses()) {
        if (u.user->kind() == c10::prim::ListUnpack) {
          return static_cast<int32_t>(u.user->outputs().size()) - *at;
        }
      }
      continue;
    }
    if (is_no_use(op)) {
      continue;
    }
    if (index != 0 && !is_arithmetic(op)) {
      return 0;
    }
    if ((op == "aten::lstm" || op == "aten::gru" || op == "aten::rnn_tanh" ||
         op == "aten::rnn_relu") &&
        is_overload(node, "input")) {
      return 3 - *at;
    }
    if (op == "aten::conv1d" || op == "aten::conv2d" || op == "aten::conv3d") {
      return static_cast<int32_t>(op[op.size() - 2] - '0') + 2 - *at;
    }
    if (op == "aten::permute" && in.size() == 2) {
      if (in[1]->node()->kind() == c10::prim::ListConstruct) {
        return static_cast<int32_t>(in[1]->node()->inputs().size()) - *at;
      }
      return 0;
    }
    if (node->outputs().size() != 1) {
      return 0;
    }
    std::optional<int> step;
    if (keeps_the_rank(op) || is_arithmetic(op)) {
      step = 0;
    } else if (keeps_the_tensor(op)) {
      step = rank_step(node, op);
    }
    if (!step) {
      return 0;
    }
    followed[node->output()] = *at + *step;
  }
  return 0;
}

// Where an embedding's indices come from aten::arange (through reshapes):
// a table of positions.
bool from_arange(const Value *value) {
  for (int hops = 0; hops < 32; ++hops) {
    const Node *node = value->node();
    const std::string op = op_name(node);
    if (op == "aten::arange") {
      return true;
    }
    if (!keeps_the_tensor(op) || node->inputs().empty()) {
      return false;
    }
    value = node->input(0);
  }
  return false;
}

void embedding_tables(const Block *block, const Weights &weights,
                      std::vector<std::pair<Weight, bool>> &out) {
  for (const Node *node : block->nodes()) {
    for (const Block *inner : node->blocks()) {
      embedding_tables(inner, weights, out);
    }
    if (op_name(node) == "aten::embedding" && node->inputs().size() > 1) {
      if (auto weight = weights.tensor(node->input(0))) {
        if (!weight->shape.empty()) {
          out.emplace_back(*weight, from_arange(node->input(1)));
        }
      }
    }
  }
}

char *copy_or_null(const std::string &s) { return s.empty() ? nullptr : copy_string(s); }

} // namespace

extern "C" {

char *pd_forward_input_uses(const char *data, size_t len, PdInputUse **uses, int64_t *num_uses,
                            PdEmbeddingTable **tables, int64_t *num_tables) {
  *uses = nullptr;
  *num_uses = 0;
  *tables = nullptr;
  *num_tables = 0;
  return guarded([&] {
    torch::jit::Module module = load_from_bytes(data, len);
    module.eval();
    // A copy: inlining must not change the loaded model's own graph.
    std::shared_ptr<torch::jit::Graph> graph = module.get_method("forward").graph()->copy();
    // Traced models call their submodules through prim::CallMethod.
    torch::jit::Inline(*graph);
    try {
      // Settles branches on module constants (a scripted Conv2d's padding_mode).
      torch::jit::ConstantPropagation(graph);
    } catch (const std::exception &) {
      // The unpropagated graph is walked as it is.
    }
    const auto &inputs = graph->inputs();
    if (inputs.empty()) {
      throw std::runtime_error("forward() has no self argument");
    }
    const Weights weights{module, inputs[0]};
    std::vector<Use> found;
    for (size_t i = 1; i < inputs.size(); ++i) {
      InputWalk walk(weights, inputs[i]);
      walk.walk(graph->block());
      found.push_back(walk.use);
    }
    const auto &arguments = module.get_method("forward").function().getSchema().arguments();
    std::vector<std::pair<Weight, bool>> found_tables;
    embedding_tables(graph->block(), weights, found_tables);

    auto *use_array = static_cast<PdInputUse *>(std::calloc(found.size() + 1, sizeof(PdInputUse)));
    auto *table_array =
        static_cast<PdEmbeddingTable *>(std::calloc(found_tables.size() + 1, sizeof(PdEmbeddingTable)));
    if (use_array == nullptr || table_array == nullptr) {
      std::free(use_array);
      std::free(table_array);
      throw std::bad_alloc();
    }
    for (size_t i = 0; i < found.size(); ++i) {
      const Use &u = found[i];
      PdInputUse &out = use_array[i];
      out.kind = u.kind;
      if (u.weight && u.weight->shape.size() <= PD_MAX_WEIGHT_DIMS) {
        out.weight_dims = static_cast<int32_t>(u.weight->shape.size());
        std::copy(u.weight->shape.begin(), u.weight->shape.end(), out.weight_shape);
      }
      out.dim = u.dim;
      out.groups = u.groups;
      out.transposed = u.transposed ? 1 : 0;
      out.batch_first = u.batch_first ? 1 : 0;
      out.rank = u.rank;
      out.rank_change_known = u.rank_change ? 1 : 0;
      out.rank_change = u.rank_change.value_or(0);
      // Only a linear layer takes inputs of any rank.
      out.op_rank = u.kind == PD_USE_LINEAR && u.node != nullptr
                        ? implied_rank(u.node->owningBlock(), u.node)
                        : 0;
      out.op = copy_or_null(u.op);
      out.weight = u.weight ? copy_or_null(u.weight->name) : nullptr;
      out.name = i + 1 < arguments.size() ? copy_or_null(arguments[i + 1].name()) : nullptr;
    }
    for (size_t i = 0; i < found_tables.size(); ++i) {
      table_array[i].rows = found_tables[i].first.shape[0];
      table_array[i].indices_from_arange = found_tables[i].second ? 1 : 0;
      table_array[i].weight = copy_or_null(found_tables[i].first.name);
    }
    *uses = use_array;
    *num_uses = static_cast<int64_t>(found.size());
    *tables = table_array;
    *num_tables = static_cast<int64_t>(found_tables.size());
  });
}

void pd_free_input_uses(PdInputUse *uses, int64_t num_uses, PdEmbeddingTable *tables,
                        int64_t num_tables) {
  for (int64_t i = 0; uses != nullptr && i < num_uses; ++i) {
    std::free(uses[i].op);
    std::free(uses[i].weight);
    std::free(uses[i].name);
  }
  for (int64_t i = 0; tables != nullptr && i < num_tables; ++i) {
    std::free(tables[i].weight);
  }
  std::free(uses);
  std::free(tables);
}

} // extern "C"

// Operator namespaces. A TorchScript archive's code/ records hold the
// model's code as TorchScript prints it: an operator outside torch's own
// builtins is called as `ops.NAMESPACE.name(` (or `torch.ops.…`). They are
// read from the archive's records, not from a loaded module: a model that
// calls an unregistered operator cannot be loaded at all.
namespace {

bool is_identifier_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

void collect_namespaces(const std::string &code, std::set<std::string> &found) {
  const std::string marker = "ops.";
  for (size_t at = code.find(marker); at != std::string::npos; at = code.find(marker, at + 1)) {
    // `ops.` standing alone or as `torch.ops.`, not the tail of another
    // name (`self.ops.` or `myops.`).
    if (at > 0) {
      const char before = code[at - 1];
      const bool torch_ops = at >= 6 && code.compare(at - 6, 6, "torch.") == 0;
      if (is_identifier_char(before) || (before == '.' && !torch_ops)) {
        continue;
      }
    }
    size_t end = at + marker.size();
    while (end < code.size() && is_identifier_char(code[end])) {
      ++end;
    }
    if (end > at + marker.size() && end < code.size() && code[end] == '.') {
      found.insert(code.substr(at + marker.size(), end - at - marker.size()));
    }
  }
}

// The file's bytes as libtorch's archive reader reads them, in place: the
// scan must not hold a second copy of a model that may be gigabytes.
class BytesReader : public caffe2::serialize::ReadAdapterInterface {
public:
  BytesReader(const char *data, size_t len) : data_(data), len_(len) {}
  size_t size() const override { return len_; }
  size_t read(uint64_t pos, void *buf, size_t n, const char * /*what*/) const override {
    if (pos >= len_) {
      return 0;
    }
    n = std::min<size_t>(n, len_ - static_cast<size_t>(pos));
    std::memcpy(buf, data_ + pos, n);
    return n;
  }

private:
  const char *data_;
  size_t len_;
};

} // namespace

extern "C" {

char *pd_op_namespaces(const char *data, size_t len, char **out) {
  *out = nullptr;
  return guarded([&] {
    caffe2::serialize::PyTorchStreamReader reader(std::make_shared<BytesReader>(data, len));
    std::set<std::string> found;
    for (const auto &name : reader.getAllRecords()) {
      const bool code = name.rfind("code/", 0) == 0 && name.size() > 3 &&
                        name.compare(name.size() - 3, 3, ".py") == 0;
      if (!code) {
        continue;
      }
      auto [record, size] = reader.getRecord(name);
      collect_namespaces(std::string(static_cast<const char *>(record.get()), size), found);
    }
    std::string names;
    for (const auto &ns : found) {
      if (!names.empty()) {
        names += '\n';
      }
      names += ns;
    }
    *out = copy_string(names);
  });
}

char *pd_op_namespace_registered(const char *ns, int *registered) {
  *registered = 0;
  return guarded([&] {
    const std::string prefix = std::string(ns) + "::";
    for (const auto &op : torch::jit::getAllOperators()) {
      if (op->schema().name().rfind(prefix, 0) == 0) {
        *registered = 1;
        return;
      }
    }
  });
}

} // extern "C"
