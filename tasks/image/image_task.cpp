// Image classification task and its vision transformer.
#include "tasks/image/image_task.h"

#include <fmt/format.h>

#include "harness/sha256.h"
#include "tasks/image/idx.h"

namespace moelab {
namespace {

// Fashion-MNIST training-set pixel statistics (on [0, 1] values).
constexpr double kPixelMean = 0.2860;
constexpr double kPixelStd = 0.3530;

torch::Tensor normalise(const torch::Tensor& images_u8) {
  return (images_u8.to(torch::kFloat) / 255.0 - kPixelMean) / kPixelStd;
}

}  // namespace

VitImpl::VitImpl(const RunConfig& config, int64_t image_side, int64_t patch, int64_t classes)
    : patch_(patch) {
  const auto& model = config.model;
  const int64_t patches = (image_side / patch) * (image_side / patch);
  embed_ = register_module("embed", torch::nn::Linear(patch * patch, model.dim));
  positions_ = register_parameter("positions", torch::randn({1, patches, model.dim}) * 0.02);
  backbone_ = register_module(
      "backbone", Transformer(model, config.router, /*causal=*/false, config.seed));
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

torch::Tensor VitImpl::loss(const Batch& batch, const RouteContext& ctx) {
  return torch::nn::functional::cross_entropy(logits(batch.input, ctx), batch.target);
}

ImageTask::ImageTask(const ImageOptions& options, const RunConfig& config)
    : options_(options), sampler_(1, 0) {
  const std::string dir = options.data_dir;
  auto load = [&](const std::string& images, const std::string& labels) {
    const std::string image_path = dir + "/" + images, label_path = dir + "/" + labels;
    Split s{normalise(read_idx_images(image_path)), read_idx_labels(label_path)};
    if (s.images.size(0) != s.labels.size(0)) {
      throw Error(fmt::format("'{}' has {} images but '{}' has {} labels", image_path,
                              s.images.size(0), label_path, s.labels.size(0)));
    }
    files_.push_back(image_path);
    files_.push_back(label_path);
    return s;
  };
  Split full = load("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz");
  test_ = load("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz");

  const int64_t side = full.images.size(1);
  if (side % options.patch != 0 || full.images.size(2) != side) {
    throw ConfigError(fmt::format("task.patch = {}: must divide the image side {}", options.patch,
                                  side));
  }
  const int64_t total = full.images.size(0);
  if (options.val_size >= total) {
    throw ConfigError(fmt::format("task.val_size = {}: must be < the {} training images",
                                  options.val_size, total));
  }
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
  return {train_.images.index_select(0, indices), train_.labels.index_select(0, indices)};
}

const ImageTask::Split& ImageTask::split(const std::string& name) const {
  if (name == "train") return train_;
  if (name == "val") return val_;
  if (name == "test") return test_;
  throw Error(fmt::format("image task has no split '{}' (train, val, test)", name));
}

MetricValues ImageTask::evaluate(TaskModel& model, const std::string& split_name,
                                 const RunConfig& config, torch::Device device) {
  const Split& data = split(split_name);
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
    auto images = data.images.narrow(0, start, size).to(device);
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

std::vector<std::pair<std::string, std::string>> ImageTask::data_files() const {
  std::vector<std::pair<std::string, std::string>> hashed;
  for (const auto& path : files_) hashed.emplace_back(path, sha256_file_hex(path));
  return hashed;
}

}  // namespace moelab
