// Image classification task and its vision transformer.
#include "tasks/image/image_task.h"

#include <fmt/format.h>

#include <unistd.h>

#include <map>
#include <mutex>
#include <sstream>

#include "harness/core/file_cache.h"
#include "harness/core/parse.h"
#include "harness/core/sha256.h"
#include "tasks/image/corruptions.h"
#include "tasks/image/idx.h"

namespace moelab {
namespace {

// Fashion-MNIST training-set pixel statistics (on [0, 1] values).
constexpr double kPixelMean = 0.2860;
constexpr double kPixelStd = 0.3530;

// [B, H, W] uint8 -> [B, H, W] float. Applied per batch: the splits stay uint8 (4x smaller, and
// a run never pays for normalising images it does not use).
torch::Tensor normalise(const torch::Tensor& images_u8) {
  return (images_u8.to(torch::kFloat) / 255.0 - kPixelMean) / kPixelStd;
}

// A decoded IDX file, read once per process and again only when the file changes (size or
// modification time): a sweep worker runs many runs on the same files.
torch::Tensor read_idx_cached(const std::string& path, bool images) {
  static std::mutex mutex;
  static std::map<std::string, std::pair<std::string, torch::Tensor>> cache;  // path -> (stamp, data)
  const std::string stamp = file_stamp(path);
  std::lock_guard<std::mutex> lock(mutex);
  auto& entry = cache[path];
  if (stamp.empty() || entry.first != stamp) {
    const std::string plain = decompressed_path(path);  // inflated once per user, not per run
    entry = {stamp, images ? read_idx_images(plain) : read_idx_labels(plain)};
  }
  return entry.second;
}

// Corrupted test sets, generated once per process: a sweep worker evaluates many runs on the
// same sets. Keyed by everything that determines the pixels; bounded in memory.
class CorruptionCache {
 public:
  torch::Tensor get(const std::string& key, const std::function<torch::Tensor()>& make) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = sets_.find(key);
    if (found != sets_.end()) return found->second;
    auto images = make();
    bytes_ += images.numel();
    if (bytes_ > kMaxBytes) {  // a different data set or seed: start over
      sets_.clear();
      bytes_ = images.numel();
    }
    return sets_[key] = images;
  }

 private:
  static constexpr int64_t kMaxBytes = int64_t{2} << 30;
  std::mutex mutex_;
  std::map<std::string, torch::Tensor> sets_;
  int64_t bytes_ = 0;
};

CorruptionCache& corruption_cache() {
  static CorruptionCache cache;
  return cache;
}

std::vector<std::string> split_list(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::istringstream in(text);
  for (std::string part; std::getline(in, part, separator);) parts.push_back(part);
  return parts;
}

}  // namespace

VitImpl::VitImpl(const RunConfig& config, int64_t image_side, int64_t patch, int64_t classes)
    : patch_(patch) {
  const auto& model = config.model;
  const int64_t patches = (image_side / patch) * (image_side / patch);
  embed_ = register_module("embed", torch::nn::Linear(patch * patch, model.dim));
  positions_ = register_parameter("positions", torch::randn({1, patches, model.dim}) * 0.02);
  backbone_ = register_module(
      "backbone", backbone_for(config, /*causal=*/false));
  head_ = register_module("head", torch::nn::Linear(model.dim, classes));
}

torch::Tensor VitImpl::logits(const torch::Tensor& images, const RouteContext& ctx) {
  const int64_t batch = images.size(0), side = images.size(1), grid = side / patch_;
  auto patches = images.reshape({batch, grid, patch_, grid, patch_})
                     .permute({0, 1, 3, 2, 4})
                     .reshape({batch, grid * grid, patch_ * patch_});  // [B, N, p*p]
  auto h = embed_(patches) + positions_;                               // [B, N, D]
  h = backbone_(h, ctx);                                               // [B, N, D]
  return head_(h.mean(1));                                             // [B, C]
}

torch::Tensor VitImpl::predict(const Batch& batch, const RouteContext& ctx) {
  return logits(batch.input, ctx);  // [B, C]
}

namespace {

const char* const kTrainImages = "train-images-idx3-ubyte.gz";
const char* const kTrainLabels = "train-labels-idx1-ubyte.gz";
const char* const kTestImages = "t10k-images-idx3-ubyte.gz";
const char* const kTestLabels = "t10k-labels-idx1-ubyte.gz";

// task.patch and task.val_size against the training images' shape [N, rows, cols].
void check_geometry(const ImageOptions& options, const std::vector<int64_t>& shape) {
  const int64_t side = shape.at(1);
  if (side % options.patch != 0 || shape.at(2) != side) {
    throw ConfigError(fmt::format("task.patch = {}: must divide the image side {}", options.patch,
                                  side));
  }
  if (options.val_size >= shape.at(0)) {
    throw ConfigError(fmt::format("task.val_size = {}: must be < the {} training images",
                                  options.val_size, shape.at(0)));
  }
}

}  // namespace

void ImageTask::check(const ImageOptions& options, const RunConfig&) {
  for (const char* name : {kTrainImages, kTrainLabels, kTestImages, kTestLabels}) {
    const std::string path = options.data_dir + "/" + name;
    if (access(path.c_str(), R_OK) != 0) {
      throw ConfigError(fmt::format("task.data_dir = '{}': cannot read '{}' (is the dataset "
                                    "installed? run harness/scripts/setup.sh)",
                                    options.data_dir, path));
    }
  }
  check_geometry(options, read_idx_image_shape(options.data_dir + "/" + kTrainImages));
}

ImageTask::ImageTask(const ImageOptions& options, const RunConfig& config)
    : options_(options), seed_(static_cast<uint64_t>(config.seed)), sampler_(1, 0) {
  const std::string dir = options.data_dir;
  auto load = [&](const std::string& images, const std::string& labels) {
    const std::string image_path = dir + "/" + images, label_path = dir + "/" + labels;
    Split s{read_idx_cached(image_path, /*images=*/true),
            read_idx_cached(label_path, /*images=*/false)};
    if (s.images.size(0) != s.labels.size(0)) {
      throw Error(fmt::format("'{}' has {} images but '{}' has {} labels", image_path,
                              s.images.size(0), label_path, s.labels.size(0)));
    }
    const int64_t largest = s.labels.max().item<int64_t>(), smallest = s.labels.min().item<int64_t>();
    if (smallest < 0 || largest >= classes_) {
      throw Error(fmt::format("'{}': label {} is not a class of 0..{}", label_path,
                              smallest < 0 ? smallest : largest, classes_ - 1));
    }
    files_.push_back(image_path);
    files_.push_back(label_path);
    return s;
  };
  Split full = load(kTrainImages, kTrainLabels);
  test_ = load(kTestImages, kTestLabels);
  check_geometry(options, {full.images.size(0), full.images.size(1), full.images.size(2)});
  const int64_t total = full.images.size(0);
  int64_t train_count = total - options.val_size;
  if (options.train_limit > 0) train_count = std::min(train_count, options.train_limit);
  train_ = {full.images.narrow(0, 0, train_count), full.labels.narrow(0, 0, train_count)};
  val_ = {full.images.narrow(0, total - options.val_size, options.val_size),
          full.labels.narrow(0, total - options.val_size, options.val_size)};
  sampler_ = EpochSampler(train_count, static_cast<uint64_t>(config.seed));
}

std::shared_ptr<TaskModel> ImageTask::build_model(const RunConfig& config) {
  return std::make_shared<VitImpl>(config, train_.images.size(1), options_.patch, classes_);
}

Batch ImageTask::train_batch(int64_t step, int64_t batch_size) {
  auto indices = torch::tensor(sampler_.batch(step, batch_size), torch::kLong);
  return {normalise(train_.images.index_select(0, indices)), train_.labels.index_select(0, indices)};
}

ImageTask::Split ImageTask::split(const std::string& name) const {
  if (name == "train") return train_;
  if (name == "val") return val_;
  if (name == "test") return test_;
  if (name.find(':') != std::string::npos) return corrupted_test(name);
  throw Error(fmt::format("image task has no split '{}' (train, val, test)", name));
}

// "fmnist_c:NAME" or "cifar_c:NAME:SEVERITY" -> the corrupted (first corruption_examples)
// test images.
ImageTask::Split ImageTask::corrupted_test(const std::string& name) const {
  const auto parts = split_list(name, ':');
  const CorruptionEntry& corruption = find_corruption(parts.at(0), parts.at(1));
  const int64_t severity = parts.size() > 2 ? to_int64(parts[2], name + ": severity") : 1;
  int64_t count = test_.images.size(0);
  if (options_.corruption_examples > 0) count = std::min(count, options_.corruption_examples);
  const std::string key = fmt::format("{}|{}|{}|{}", options_.data_dir, seed_, name, count);
  auto pixels = corruption_cache().get(key, [&] {
    return corrupt_images(test_.images.narrow(0, 0, count), corruption, severity, seed_);
  });
  return {pixels, test_.labels.narrow(0, 0, count)};
}

const TaskMetrics& ImageTask::metrics() {
  static const TaskMetrics declared = [] {
    TaskMetrics m;
    m.task = "image";
    m.metrics = {{"accuracy", Better::Higher, "share of images classified correctly"},
                 {"loss", Better::Lower, "mean cross-entropy (nats)"},
                 {"mean_error", Better::Lower, "mean of 1 - accuracy over a corruption suite"}};
    m.main = {"accuracy"};
    const char* help[] = {"the 15 MNIST-C corruptions at their fixed severity",
                          "the 15 CIFAR-10-C corruptions, severities 1-5, single-channel"};
    int index = 0;
    for (const char* name : {"fmnist_c", "cifar_c"}) {
      CorruptionSuite suite{name, {}, 1, "accuracy", help[index++]};
      for (const auto& corruption : suite_corruptions(name)) {
        suite.corruptions.emplace_back(corruption.name);
        suite.severities = corruption.severities;
      }
      m.suites.push_back(suite);
    }
    return m;
  }();
  return declared;
}

std::vector<std::string> ImageTask::final_splits() const {
  std::vector<std::string> splits = {"val", "test"};
  if (options_.corruptions.empty()) return splits;
  for (const auto& name : split_list(options_.corruptions, ',')) {
    const auto suite = metrics().suite(name).splits();
    splits.insert(splits.end(), suite.begin(), suite.end());
  }
  return splits;
}

MetricValues ImageTask::derived_summaries(const MetricValues& finals) const {
  // (group name) -> (sum of errors, count), in first-seen order.
  std::vector<std::pair<std::string, std::pair<double, int64_t>>> groups;
  auto add = [&](const std::string& group, double error) {
    for (auto& entry : groups) {
      if (entry.first == group) {
        entry.second.first += error;
        entry.second.second += 1;
        return;
      }
    }
    groups.push_back({group, {error, 1}});
  };
  for (const auto& [name, value] : finals) {
    const auto slash = name.rfind('/');
    if (slash == std::string::npos || name.substr(slash + 1) != "accuracy") continue;
    const std::string label = name.substr(0, slash);
    const auto at = label.find('@');
    const std::string split = label.substr(0, at);
    const std::string suffix = at == std::string::npos ? "" : label.substr(at);
    const auto parts = split_list(split, ':');
    if (parts.size() < 2) continue;
    add(parts[0] + suffix, 1.0 - value);
    if (parts.size() == 3) add(parts[0] + ":" + parts[1] + suffix, 1.0 - value);
  }
  MetricValues derived;
  for (const auto& [group, sum] : groups) {
    derived.emplace_back(group + "/mean_error", sum.first / static_cast<double>(sum.second));
  }
  return derived;
}

MetricValues ImageTask::evaluate(TaskModel& model, const std::string& split_name,
                                 const RunConfig& config, torch::Device device) {
  const Split data = split(split_name);
  auto& vit = dynamic_cast<VitImpl&>(model);
  int64_t count = data.images.size(0);
  if (config.eval.max_examples > 0) count = std::min(count, config.eval.max_examples);
  torch::NoGradGuard no_grad;
  RouteContext ctx;
  ctx.training = false;
  ctx.seed = config.seed;
  double loss_sum = 0.0;
  int64_t correct = 0;
  for (int64_t start = 0; start < count; start += config.eval.batch_size) {
    const int64_t size = std::min(config.eval.batch_size, count - start);
    auto images = normalise(data.images.narrow(0, start, size)).to(device);
    auto labels = data.labels.narrow(0, start, size).to(device);
    auto logits = vit.logits(images, ctx);  // [b, C]
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, labels,
                    torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += logits.argmax(-1).eq(labels).sum().item<int64_t>();
  }
  return {{"accuracy", static_cast<double>(correct) / count},
          {"loss", loss_sum / count}};
}

}  // namespace moelab
