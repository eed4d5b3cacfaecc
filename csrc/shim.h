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

// Facts about a TorchScript file: the number of forward() arguments (without
// self), how many of them have no default, and whether its graphs call
// quantized:: operators.
char *pd_module_info(const char *path, int64_t *num_inputs, int64_t *num_required,
                     int *has_quantized_ops);

#ifdef __cplusplus
}
#endif
