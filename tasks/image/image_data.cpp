// Image datasets: readers for the official releases, statistics, augmentation.
#include "tasks/image/image_data.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <mutex>

#include "harness/core/error.h"
#include "harness/core/file_cache.h"
#include "harness/core/rng.h"
#include "harness/core/sha256.h"
#include "tasks/image/idx.h"

namespace moelab {
namespace {

const char* const kIdxFiles[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
const char* const kCifar10Train[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                     "data_batch_4.bin", "data_batch_5.bin"};
const char* const kCifar10Test = "test_batch.bin";
const char* const kCifar100Train = "train.bin";
const char* const kCifar100Test = "test.bin";
constexpr int64_t kCifarPixels = 3 * 32 * 32;

bool is_cifar(const std::string& dataset) { return dataset == "cifar10" || dataset == "cifar100"; }

// Bytes of one CIFAR record: the label byte(s), then 1024 red, 1024 green, 1024 blue pixels.
int64_t cifar_record(const std::string& dataset) { return (dataset == "cifar100" ? 2 : 1) + kCifarPixels; }

std::string path_in(const std::string& dir, const char* name) { return dir + "/" + name; }

std::vector<std::string> dataset_files(const DatasetRequest& request) {
  const std::string dir = dataset_dir(request);
  std::vector<std::string> files;
  if (request.dataset == "cifar10") {
    for (const char* name : kCifar10Train) files.push_back(path_in(dir, name));
    files.push_back(path_in(dir, kCifar10Test));
  } else if (request.dataset == "cifar100") {
    files = {path_in(dir, kCifar100Train), path_in(dir, kCifar100Test)};
  } else {
    for (const char* name : kIdxFiles) files.push_back(path_in(dir, name));
  }
  return files;
}

// Records in a CIFAR file, from its size: ConfigError naming the file unless a positive whole
// number of records.
int64_t cifar_records(const std::string& path, const std::string& dataset) {
  struct stat info {};
  if (stat(path.c_str(), &info) != 0 || access(path.c_str(), R_OK) != 0) {
    throw ConfigError(fmt::format("cannot read '{}' ({} binary release; see docs/data.md)", path,
                                  dataset));
  }
  const int64_t record = cifar_record(dataset);
  if (info.st_size == 0 || info.st_size % record != 0) {
    throw ConfigError(fmt::format("'{}': {} bytes is not a whole number of {}-byte {} records "
                                  "(truncated or not the binary version?)",
                                  path, static_cast<int64_t>(info.st_size), record, dataset));
  }
  return info.st_size / record;
}

// A decoded file, read once per process and again only when the file changes (size or
// modification time): a sweep worker runs many runs on the same files.
ImageSplit read_cached(const std::string& path, const std::function<ImageSplit()>& read) {
  static std::mutex mutex;
  static std::map<std::string, std::pair<std::string, ImageSplit>> cache;  // path -> (stamp, data)
  const std::string stamp = file_stamp(path);
  std::lock_guard<std::mutex> lock(mutex);
  auto& entry = cache[path];
  if (stamp.empty() || entry.first != stamp) entry = {stamp, read()};
  return entry.second;
}

ImageSplit read_cifar_file(const std::string& path, const DatasetRequest& request) {
  return read_cached(path + (request.coarse_labels ? "|coarse" : "|fine"), [&] {
    const int64_t records = cifar_records(path, request.dataset);
    const int64_t record = cifar_record(request.dataset);
    auto raw = map_file_bytes(path).view({records, record});  // [N, record] uint8, mapped
    const int64_t label_column = request.dataset == "cifar100" && !request.coarse_labels ? 1 : 0;
    const int64_t pixels_from = record - kCifarPixels;
    ImageSplit split{raw.narrow(1, pixels_from, kCifarPixels).view({records, 3, 32, 32}),
                     raw.select(1, label_column).to(torch::kLong)};
    check_label_range(split.labels, dataset_classes(request), "'" + path + "'");
    return split;
  });
}

ImageSplit read_idx_pair(const std::string& images_path, const std::string& labels_path,
                         int64_t classes) {
  return read_cached(images_path, [&] {
    ImageSplit split{read_idx_images(decompressed_path(images_path)).unsqueeze(1),
                     read_idx_labels(decompressed_path(labels_path))};
    if (split.images.size(0) != split.labels.size(0)) {
      throw ConfigError(fmt::format("'{}' has {} images but '{}' has {} labels", images_path,
                                    split.images.size(0), labels_path, split.labels.size(0)));
    }
    check_label_range(split.labels, classes, "'" + labels_path + "'");
    return split;
  });
}

}  // namespace

const std::vector<DatasetInfo>& image_datasets() {
  static const std::vector<DatasetInfo> list = {
      {"fashion_mnist", 10, 1, 28, {0.2860}, {0.3530}, "/usr/share/datasets/fashion-mnist",
       "the four *-idx?-ubyte.gz files (Debian's dataset-fashion-mnist: run harness/scripts/setup.sh)"},
      {"mnist", 10, 1, 28, {0.1307}, {0.3081}, "",
       "the four MNIST *-idx?-ubyte files (gzip or plain)"},
      {"cifar10", 10, 3, 32, {0.4914, 0.4822, 0.4465}, {0.2470, 0.2435, 0.2616}, "",
       "data_batch_1.bin .. data_batch_5.bin and test_batch.bin (cifar-10-batches-bin)"},
      {"cifar100", 100, 3, 32, {0.5071, 0.4865, 0.4409}, {0.2673, 0.2564, 0.2762}, "",
       "train.bin and test.bin (cifar-100-binary)"},
  };
  return list;
}

const DatasetInfo& find_dataset(const std::string& name) {
  std::string known;
  for (const auto& info : image_datasets()) {
    if (name == info.name) return info;
    known += (known.empty() ? "" : ", ") + std::string(info.name);
  }
  throw ConfigError(fmt::format("task.dataset = '{}': unknown (known: {})", name, known));
}

std::string dataset_dir(const DatasetRequest& request) {
  if (!request.data_dir.empty()) return request.data_dir;
  const DatasetInfo& info = find_dataset(request.dataset);
  if (*info.default_dir == '\0') {
    throw ConfigError(fmt::format("task.dataset = '{}' needs task.data_dir: a folder with {} "
                                  "(where to get them: docs/data.md)",
                                  request.dataset, info.files));
  }
  return info.default_dir;
}

int64_t dataset_classes(const DatasetRequest& request) {
  if (request.dataset == "cifar100" && request.coarse_labels) return 20;
  return find_dataset(request.dataset).classes;
}

int64_t check_dataset_files(const DatasetRequest& request) {
  const DatasetInfo& info = find_dataset(request.dataset);
  if (request.coarse_labels && request.dataset != "cifar100") {
    throw ConfigError(fmt::format("task.labels = coarse: only cifar100 has coarse labels, not {}",
                                  request.dataset));
  }
  const auto files = dataset_files(request);
  for (const auto& path : files) {
    if (access(path.c_str(), R_OK) != 0) {
      throw ConfigError(fmt::format("task.data_dir = '{}': cannot read '{}' ({} needs {}; see "
                                    "docs/data.md)",
                                    dataset_dir(request), path, request.dataset, info.files));
    }
  }
  if (is_cifar(request.dataset)) {
    int64_t train = 0;
    for (size_t i = 0; i + 1 < files.size(); ++i) train += cifar_records(files[i], request.dataset);
    cifar_records(files.back(), request.dataset);
    return train;
  }
  const auto shape = read_idx_image_shape(files[0]);  // {N, rows, cols}
  if (shape.at(1) != info.side || shape.at(2) != info.side) {
    throw ConfigError(fmt::format("'{}': {}x{} images, but {} has {}x{}", files[0], shape[1],
                                  shape[2], request.dataset, info.side, info.side));
  }
  return shape[0];
}

LoadedDataset load_dataset(const DatasetRequest& request) {
  check_dataset_files(request);
  const auto files = dataset_files(request);
  LoadedDataset loaded;
  loaded.files = files;
  if (is_cifar(request.dataset)) {
    std::vector<torch::Tensor> images, labels;
    for (size_t i = 0; i + 1 < files.size(); ++i) {
      const ImageSplit part = read_cifar_file(files[i], request);
      images.push_back(part.images);
      labels.push_back(part.labels);
    }
    loaded.train = images.size() == 1 ? ImageSplit{images[0], labels[0]}
                                      : ImageSplit{torch::cat(images), torch::cat(labels)};
    loaded.test = read_cifar_file(files.back(), request);
    return loaded;
  }
  const int64_t classes = dataset_classes(request);
  loaded.train = read_idx_pair(files[0], files[1], classes);
  loaded.test = read_idx_pair(files[2], files[3], classes);
  return loaded;
}

void check_label_range(const torch::Tensor& labels, int64_t classes, const std::string& what) {
  if (labels.numel() == 0) return;
  const int64_t largest = labels.max().item<int64_t>(), smallest = labels.min().item<int64_t>();
  if (smallest < 0 || largest >= classes) {
    throw ConfigError(fmt::format("{}: label {} is not a class of 0..{}", what,
                                  smallest < 0 ? smallest : largest, classes - 1));
  }
}

torch::Tensor normalise_unit(const torch::Tensor& pixels, const DatasetInfo& info) {
  const int64_t channels = pixels.size(1);
  MOELAB_CHECK(channels == static_cast<int64_t>(info.mean.size()),
               "{} images have {} channels, not {}", info.name, info.mean.size(), channels);
  if (channels == 1) return (pixels - info.mean[0]) / info.std[0];
  auto out = torch::empty_like(pixels);  // [B, C, H, W]
  for (int64_t c = 0; c < channels; ++c) {
    out.select(1, c).copy_((pixels.select(1, c) - info.mean[c]) / info.std[c]);
  }
  return out;
}

torch::Tensor normalise_pixels(const torch::Tensor& images_u8, const DatasetInfo& info) {
  return normalise_unit(images_u8.to(torch::kFloat) / 255.0, info);
}

torch::Tensor crop_flip(const torch::Tensor& images_u8, int64_t padding, uint64_t seed,
                        int64_t step) {
  const int64_t batch = images_u8.size(0), rows = images_u8.size(2), cols = images_u8.size(3);
  auto padded = torch::constant_pad_nd(images_u8, {padding, padding, padding, padding}, 0);
  auto out = torch::empty_like(images_u8);  // [B, C, H, W]
  for (int64_t b = 0; b < batch; ++b) {
    Rng rng = Rng::keyed({seed, fnv1a("crop_flip"), static_cast<uint64_t>(step),
                          static_cast<uint64_t>(b)});
    const int64_t top = rng.between(0, 2 * padding), left = rng.between(0, 2 * padding);
    auto crop = padded[b].narrow(1, top, rows).narrow(2, left, cols);  // [C, H, W]
    out[b].copy_(rng.uniform() < 0.5 ? crop.flip({2}) : crop);
  }
  return out;
}

}  // namespace moelab
