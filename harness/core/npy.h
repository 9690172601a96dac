// NumPy .npy files (format versions 1-3): float32 C-order arrays, read and written, so
// researchers can hand router logits to `moelab route` from Python.
#pragma once

#include <torch/torch.h>

#include <string>

namespace moelab {

torch::Tensor read_npy_float32(const std::string& path);  // any rank; throws ConfigError
void write_npy_float32(const std::string& path, const torch::Tensor& tensor);

}  // namespace moelab
