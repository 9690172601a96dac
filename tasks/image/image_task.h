// `image`: image classification with a small vision transformer whose FFN blocks are MoE
// layers. Dataset: Fashion-MNIST from Debian's dataset-fashion-mnist (gzip IDX). The last
// `val_size` training images are held out as the validation split; test is the official 10k.
#pragma once

#include "harness/core/sampler.h"
#include "tasks/task.h"
#include "tasks/task_metrics.h"

namespace moelab {

struct ImageOptions {
  std::string dataset = "fashion_mnist";
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int64_t patch = 7;
  int64_t val_size = 5000;
  int64_t train_limit = 0;
  std::string corruptions = "";
  int64_t corruption_examples = 0;

  template <class V>
  void visit(V& v) {
    v(dataset, "dataset", "which dataset", one_of({"fashion_mnist"}));
    v(data_dir, "data_dir", "folder with the four *-idx?-ubyte.gz files", not_hashed());
    v(patch, "patch", "patch side in pixels (must divide the image side)", at_least(1));
    v(val_size, "val_size", "training images held out (from the end) for validation",
      at_least(1));
    v(train_limit, "train_limit", "use only the first N training images; 0 = all", at_least(0));
    v(corruptions, "corruptions",
      "corruption suites evaluated on the test set after training: fmnist_c (the 15 MNIST-C "
      "corruptions at their fixed severity), cifar_c (the 15 CIFAR-10-C corruptions, "
      "severities 1-5, single-channel; frost uses a procedural texture), both, or \"\"",
      one_of({"", "fmnist_c", "cifar_c", "fmnist_c,cifar_c"}));
    v(corruption_examples, "corruption_examples",
      "corrupt only the first N test images (per corruption and severity); 0 = all", at_least(0));
  }
};

// Vision transformer: patches -> linear embedding + learned positions -> backbone -> mean
// pool -> linear classifier.
class VitImpl : public TaskModel {
 public:
  VitImpl(const RunConfig& config, int64_t image_side, int64_t patch, int64_t classes);
  torch::Tensor logits(const torch::Tensor& images, const RouteContext& ctx);  // [B, C]
  torch::Tensor predict(const Batch& batch, const RouteContext& ctx) override;  // [B, C]
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
  static const TaskMetrics& metrics();
  // The four IDX files exist; patch and val_size fit the training images' header.
  static void check(const ImageOptions& options, const RunConfig& config);

  std::shared_ptr<TaskModel> build_model(const RunConfig& config) override;
  Batch train_batch(int64_t step, int64_t batch_size) override;
  MetricValues evaluate(TaskModel& model, const std::string& split, const RunConfig& config,
                        torch::Device device) override;
  // val, test, then "fmnist_c:NAME" and "cifar_c:NAME:SEVERITY" for the configured suites.
  std::vector<std::string> final_splits() const override;
  // Per suite "SUITE/mean_error" over every corruption (and severity), and for cifar_c
  // "cifar_c:NAME/mean_error" over severities: the inputs of CE and mCE.
  MetricValues derived_summaries(const MetricValues& finals) const override;
  std::vector<std::string> data_paths() const override { return files_; }

 private:
  struct Split {
    torch::Tensor images;  // [N, H, W] uint8 pixels, normalised per batch
    torch::Tensor labels;  // [N] int64
  };
  Split split(const std::string& name) const;
  Split corrupted_test(const std::string& name) const;

  ImageOptions options_;
  uint64_t seed_;
  Split train_, val_, test_;
  int64_t classes_ = 10;
  EpochSampler sampler_;
  std::vector<std::string> files_;  // data files read (provenance)
};

}  // namespace moelab
