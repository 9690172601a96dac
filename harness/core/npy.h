// NumPy .npy files (format versions 1-3, C order, little-endian u1 i1 i2 i4 i8 f4 f8): read
// whole or by rows of the leading dimension (a corruption file's severity block), and
// written, so researchers can hand router logits to `moelab route` from Python and tests can
// write data in the official layouts.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace moelab {

struct NpyHeader {
  torch::ScalarType dtype;
  std::vector<int64_t> shape;
  int64_t data_offset = 0;  // bytes from the start of the file
};
NpyHeader read_npy_header(const std::string& path);  // ConfigError naming the file

// Rows [first, first + count) of the leading dimension, in the file's dtype. ConfigError when
// the file is truncated or the rows are out of range.
torch::Tensor read_npy_rows(const std::string& path, int64_t first, int64_t count);
torch::Tensor read_npy_float32(const std::string& path);  // any rank >= 1; float32 only
void write_npy(const std::string& path, const torch::Tensor& tensor);  // the tensor's dtype
void write_npy_float32(const std::string& path, const torch::Tensor& tensor);

}  // namespace moelab
