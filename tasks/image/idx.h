// Reader for IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or plain.
// Validates magic number, dimensions and size; a truncated or wrong file is a clear Error.
#pragma once

#include <torch/torch.h>

#include <string>

namespace moelab {

torch::Tensor read_idx_images(const std::string& path);  // [N, rows, cols] uint8
torch::Tensor read_idx_labels(const std::string& path);  // [N] int64
// A whole plain file as a 1-d uint8 tensor mapped copy-on-write (processes share its pages).
torch::Tensor map_file_bytes(const std::string& path);
// An image file's header only: {N, rows, cols}.
std::vector<int64_t> read_idx_image_shape(const std::string& path);

}  // namespace moelab
