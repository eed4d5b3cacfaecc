// The only C++ in precisiond: libtorch APIs that tch does not wrap, behind a
// C ABI. Every entry point runs its body inside `guarded`, so no C++
// exception ever crosses into Rust; it comes back as an error string.
#include "shim.h"

#include <ATen/Context.h>
#include <ATen/Version.h>
#include <torch/headeronly/version.h>
#include <torch/script.h>

#include <cstdlib>
#include <cstring>
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

char *pd_module_info(const char *path, int64_t *num_inputs, int64_t *num_required,
                     int *has_quantized_ops) {
  return guarded([&] {
    torch::jit::Module module = torch::jit::load(path);
    const auto &arguments = module.get_method("forward").function().getSchema().arguments();
    // The first argument is `self`.
    *num_inputs = static_cast<int64_t>(arguments.size()) - 1;
    *num_required = 0;
    for (size_t i = 1; i < arguments.size(); ++i) {
      if (!arguments[i].default_value().has_value()) {
        *num_required += 1;
      }
    }
    bool quantized = false;
    for (const auto &sub : module.modules()) {
      for (const auto &method : sub.get_methods()) {
        if (block_calls_quantized(method.graph()->block())) {
          quantized = true;
        }
      }
    }
    *has_quantized_ops = quantized ? 1 : 0;
  });
}

} // extern "C"
