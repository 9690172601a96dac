// Readers and checks for the released corruption files (CIFAR-10-C, CIFAR-100-C, MNIST-C).
#include "tasks/image/corruption_files.h"

#include <fmt/format.h>

#include <algorithm>

#include "harness/core/error.h"
#include "harness/core/npy.h"
#include "tasks/image/corruptions.h"

namespace moelab {
namespace {

bool per_corruption_folder(const FileSuite& suite) { return suite.severities == 1; }

std::string images_path(const FileSuite& suite, const std::string& dir, const std::string& name) {
  return per_corruption_folder(suite) ? fmt::format("{}/{}/test_images.npy", dir, name)
                                      : fmt::format("{}/{}.npy", dir, name);
}

std::string labels_path(const FileSuite& suite, const std::string& dir, const std::string& name) {
  return per_corruption_folder(suite) ? fmt::format("{}/{}/test_labels.npy", dir, name)
                                      : fmt::format("{}/labels.npy", dir);
}

std::string shape_text(const std::vector<int64_t>& shape) {
  return fmt::format("({})", fmt::join(shape, ", "));
}

bool is_integer(torch::ScalarType type) {
  return type == torch::kUInt8 || type == torch::kInt8 || type == torch::kInt16 ||
         type == torch::kInt32 || type == torch::kInt64;
}

// Rows of the image file; ConfigError unless [rows, side, side, C] uint8 with rows a multiple
// of the severities.
int64_t check_images(const FileSuite& suite, const std::string& path, const DatasetInfo& info) {
  const NpyHeader header = read_npy_header(path);
  const std::vector<int64_t> expected_tail = {info.side, info.side, info.channels};
  if (header.dtype != torch::kUInt8 || header.shape.size() != 4 ||
      std::vector<int64_t>(header.shape.begin() + 1, header.shape.end()) != expected_tail) {
    throw ConfigError(fmt::format(
        "'{}': {} images must be uint8 of shape (N, {}, {}, {}); this file holds {} of shape {}",
        path, suite.name, info.side, info.side, info.channels,
        c10::toString(header.dtype), shape_text(header.shape)));
  }
  if (header.shape[0] == 0 || header.shape[0] % suite.severities != 0) {
    throw ConfigError(fmt::format("'{}': {} images are not {} equal severity blocks", path,
                                  header.shape[0], suite.severities));
  }
  return header.shape[0];
}

void check_labels_file(const std::string& path, int64_t rows) {
  const NpyHeader header = read_npy_header(path);
  if (!is_integer(header.dtype) || header.shape != std::vector<int64_t>{rows}) {
    throw ConfigError(fmt::format("'{}': labels must be integers of shape ({},); this file holds "
                                  "{} of shape {}",
                                  path, rows, c10::toString(header.dtype),
                                  shape_text(header.shape)));
  }
}

}  // namespace

const std::vector<FileSuite>& file_suites() {
  static const std::vector<FileSuite> list = {{"cifar10_c", "cifar_c", "cifar10", 5},
                                              {"cifar100_c", "cifar_c", "cifar100", 5},
                                              {"mnist_c", "fmnist_c", "mnist", 1}};
  return list;
}

const FileSuite* find_file_suite(const std::string& name) {
  for (const auto& suite : file_suites()) {
    if (name == suite.name) return &suite;
  }
  return nullptr;
}

void check_file_suite(const FileSuite& suite, const std::string& dir, const DatasetInfo& info) {
  for (const auto& corruption : suite_corruptions(suite.twin)) {
    const std::string images = images_path(suite, dir, corruption.name);
    const int64_t rows = check_images(suite, images, info);
    check_labels_file(labels_path(suite, dir, corruption.name), rows);
  }
}

std::vector<std::string> file_suite_paths(const FileSuite& suite, const std::string& dir) {
  std::vector<std::string> paths;
  for (const auto& corruption : suite_corruptions(suite.twin)) {
    paths.push_back(images_path(suite, dir, corruption.name));
    const std::string labels = labels_path(suite, dir, corruption.name);
    if (std::find(paths.begin(), paths.end(), labels) == paths.end()) paths.push_back(labels);
  }
  return paths;
}

ImageSplit read_file_corruption(const FileSuite& suite, const std::string& dir,
                                const std::string& corruption, int64_t severity, int64_t count) {
  const std::string images = images_path(suite, dir, corruption);
  const int64_t block = read_npy_header(images).shape.at(0) / suite.severities;
  const int64_t first = (severity - 1) * block;
  const int64_t n = count > 0 ? std::min(count, block) : block;
  const auto pixels = read_npy_rows(images, first, n);  // [n, H, W, C]
  const auto labels = read_npy_rows(labels_path(suite, dir, corruption), first, n);  // [n]
  return {pixels.permute({0, 3, 1, 2}).contiguous(), labels.to(torch::kLong)};
}

}  // namespace moelab
