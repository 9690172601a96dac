// `image`: image classification with a small vision transformer whose FFN blocks are MoE
// layers. Dataset: Fashion-MNIST from Debian's dataset-fashion-mnist (gzip IDX). The last
// `val_size` training images are held out as the validation split; test is the official 10k.
#pragma once

#include "harness/sampler.h"
#include "tasks/task.h"

namespace moelab {

struct ImageOptions {
  std::string dataset = "fashion_mnist";
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int64_t patch = 7;
  int64_t val_size = 5000;
  int64_t train_limit = 0;

  template <class V>
  void visit(V& v) {
    v(dataset, "dataset", "which dataset", one_of({"fashion_mnist"}));
    v(data_dir, "data_dir", "folder with the four *-idx?-ubyte.gz files", not_hashed());
    v(patch, "patch", "patch side in pixels (must divide the image side)", at_least(1));
    v(val_size, "val_size", "training images held out (from the end) for validation",
      at_least(1));
    v(train_limit, "train_limit", "use only the first N training images; 0 = all", at_least(0));
  }
};

// Vision transformer: patches -> linear embedding + learned positions -> backbone -> mean
// pool -> linear classifier.
class VitImpl : public TaskModel {
 public:
  VitImpl(const RunConfig& config, int64_t image_side, int64_t patch, int64_t classes);
  torch::Tensor logits(const torch::Tensor& images, const RouteContext& ctx);  // [B, C]
  torch::Tensor loss(const Batch& batch, const RouteContext& ctx) override;
  Transformer backbone() override { return backbone_; }

 private:
  int64_t patch_;
  torch::nn::Linear embed_{nullptr}, head_{nullptr};
  torch::Tensor positions_;  // [1, N, D]
  Transformer backbone_{nullptr};
};

class ImageTask : public Task {
 public:
  using Options = ImageOptions;
  ImageTask(const ImageOptions& options, const RunConfig& config);

  std::shared_ptr<TaskModel> build_model(const RunConfig& config) override;
  Batch train_batch(int64_t step, int64_t batch_size) override;
  MetricValues evaluate(TaskModel& model, const std::string& split, const RunConfig& config,
                        torch::Device device) override;
  std::vector<std::pair<std::string, std::string>> data_files() const override;

 private:
  struct Split {
    torch::Tensor images;  // [N, H, W] float, normalised
    torch::Tensor labels;  // [N] int64
  };
  const Split& split(const std::string& name) const;

  ImageOptions options_;
  Split train_, val_, test_;
  int64_t classes_ = 10;
  EpochSampler sampler_;
  std::vector<std::string> files_;  // data files read, hashed on demand by data_files()
};

}  // namespace moelab
