// `image`: image classification with a small vision transformer whose FFN blocks are MoE
// layers, on Fashion-MNIST (Debian's dataset-fashion-mnist, the default), MNIST, CIFAR-10 or
// CIFAR-100 (tasks/image/image_data.h). The last `val_size` training images are held out as
// the validation split; test is the official test set. After training: corruption suites
// (generated, or the released files) and adversarial attacks on the test set.
#pragma once

#include "harness/core/sampler.h"
#include "tasks/image/attacks.h"
#include "tasks/image/image_data.h"
#include "tasks/task.h"
#include "tasks/task_metrics.h"

namespace moelab {

// task.corruptions: the corruption suites evaluated after training, as declared in
// ImageTask::metrics(). Kept in that declaration order whatever order they are written in
// (each suite is evaluated on its own).
struct CorruptionSuites {
  std::vector<std::string> names;

  static constexpr const char* kTypeName = "suite list";
  static CorruptionSuites parse(const std::string& text);  // ConfigError: unknown or repeated
  std::string canonical() const;                           // "fmnist_c,cifar_c"; "" when none
};

struct ImageOptions {
  std::string dataset = "fashion_mnist";
  std::string data_dir = "";
  std::string labels = "fine";
  int64_t patch = 7;
  int64_t val_size = 5000;
  int64_t train_limit = 0;
  std::string augment = "";
  int64_t crop_padding = 4;
  CorruptionSuites corruptions;
  std::string corruption_dir = "";
  int64_t corruption_examples = 0;
  AttackList attacks;
  int64_t attack_examples = 0;
  bool routing_replay = false;

  template <class V>
  void visit(V& v) {
    v(dataset, "dataset", "which dataset (its files: docs/data.md)",
      one_of({"fashion_mnist", "mnist", "cifar10", "cifar100"}));
    v(data_dir, "data_dir",
      "folder with the dataset's official files; \"\" = the dataset's default (Fashion-MNIST: "
      "/usr/share/datasets/fashion-mnist; the others have none)",
      not_hashed());
    v(labels, "labels", "cifar100's labels: the 100 fine classes or the 20 coarse superclasses",
      hashed_unless(std::string("fine"), one_of({"fine", "coarse"})));
    v(patch, "patch", "patch side in pixels (must divide the image side)", at_least(1));
    v(val_size, "val_size", "training images held out (from the end) for validation",
      at_least(1));
    v(train_limit, "train_limit", "use only the first N training images; 0 = all", at_least(0));
    v(augment, "augment",
      "training augmentation: \"\" (none) or crop_flip (random crop of the zero-padded image, "
      "horizontal flip with probability 1/2; drawn from (seed, step, image))",
      hashed_unless(std::string(""), one_of({"", "crop_flip"})));
    v(crop_padding, "crop_padding", "crop_flip's padding in pixels on each side",
      hashed_unless(int64_t{4}, at_least(0)));
    v(corruptions, "corruptions",
      "corruption suites evaluated on the test set after training, comma-separated: generated "
      "fmnist_c (the 15 MNIST-C corruptions, one severity) and cifar_c (the 15 CIFAR-10-C "
      "corruptions, severities 1-5), both single-channel; or the released files of cifar10_c, "
      "cifar100_c or mnist_c in task.corruption_dir");
    v(corruption_dir, "corruption_dir",
      "folder of the released corruption files (CIFAR-10-C, CIFAR-100-C or MNIST-C layout)",
      not_hashed());
    v(corruption_examples, "corruption_examples",
      "corrupt only the first N test images (per corruption and severity); 0 = all", at_least(0));
    v(attacks, "attacks", kAttacksHelp, hashed_unless(std::string("")));
    v(attack_examples, "attack_examples", "attack only the first N test images; 0 = all",
      hashed_unless(int64_t{0}, at_least(0)));
    v(routing_replay, "routing_replay",
      "with task.corruptions: also evaluate every corrupted split with the routes the clean "
      "images took (split SUITE:NAME[:S]@clean_routes), and log routing_flip, the share of "
      "tokens whose experts the corruption changed, per split and layer",
      hashed_unless(false));
  }
};

// Vision transformer: patches -> linear embedding + learned positions -> backbone -> mean
// pool -> linear classifier.
class VitImpl : public TaskModel {
 public:
  VitImpl(const RunConfig& config, int64_t channels, int64_t image_side, int64_t patch,
          int64_t classes);
  // images: normalised [B, C, H, W] -> class logits [B, classes]
  torch::Tensor logits(const torch::Tensor& images, const RouteContext& ctx);
  torch::Tensor predict(const Batch& batch, const RouteContext& ctx) override;  // [B, C]
  Transformer backbone() override { return backbone_; }

 private:
  int64_t patch_;
  torch::nn::Linear embed_{nullptr}, head_{nullptr};
  torch::Tensor positions_;  // [1, N, D]
  Transformer backbone_{nullptr};
};

// The routing rule of a corrupted split evaluated with the clean images' routes
// (task.routing_replay): "SUITE:NAME[:S]@clean_routes".
inline const std::string kCleanRoutes = "clean_routes";

class ImageTask : public Task {
 public:
  using Options = ImageOptions;
  ImageTask(const ImageOptions& options, const RunConfig& config);
  static const TaskMetrics& metrics();
  // The dataset's files, the corruption suites (and their files) and the attacks, without
  // reading the data: ConfigError naming the key, value or file.
  static void check(const ImageOptions& options, const RunConfig& config);

  std::shared_ptr<TaskModel> build_model(const RunConfig& config) override;
  Batch train_batch(int64_t step, int64_t batch_size) override;
  Batch probe_batch(int64_t count) override;
  MetricValues evaluate(TaskModel& model, const std::string& split, const RunConfig& config,
                        torch::Device device) override;
  // val, test, then "SUITE:NAME" (one severity) or "SUITE:NAME:SEVERITY" for the configured
  // suites (with task.routing_replay each again as "...@clean_routes"), then "test:LABEL"
  // per attack (AttackSpec::label).
  std::vector<std::string> final_splits() const override;
  // Per suite "SUITE/mean_error" over every corruption (and severity), and for a suite with
  // severities "SUITE:NAME/mean_error" over them: the inputs of CE and mCE; with
  // task.routing_replay also "SUITE/moe/routing_flip", the mean over the suite's splits.
  MetricValues derived_summaries(const MetricValues& finals) const override;
  std::vector<std::string> data_paths() const override { return files_; }

 private:
  ImageSplit split(const std::string& name) const;
  ImageSplit corrupted_test(const std::string& name) const;
  MetricValues evaluate_attack(VitImpl& vit, const AttackSpec& attack, const RunConfig& config,
                               torch::Device device) const;
  // A corrupted split under task.routing_replay: its own routing (with routing_flip against
  // the clean images' routes), or with id.router "clean_routes" the clean images' routing.
  MetricValues evaluate_replayed(VitImpl& vit, const SplitId& id, const RunConfig& config,
                                 torch::Device device) const;

  ImageOptions options_;
  const DatasetInfo& info_;
  uint64_t seed_;
  ImageSplit train_, val_, test_;
  int64_t classes_;
  EpochSampler sampler_;
  std::vector<std::string> files_;  // data files read (provenance)
};

}  // namespace moelab
