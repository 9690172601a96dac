// Image classification task and its vision transformer.
#include "tasks/image/image_task.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <mutex>

#include "harness/model/flops.h"
#include "harness/model/init_streams.h"
#include "harness/model/routing_diagnostics.h"
#include "harness/core/parse.h"
#include "harness/core/rng.h"
#include "tasks/image/corruption_files.h"
#include "tasks/image/corruptions.h"

namespace moelab {
namespace {

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

DatasetRequest dataset_request(const ImageOptions& options) {
  return {options.dataset, options.data_dir, options.labels == "coarse"};
}

}  // namespace

VitImpl::VitImpl(const RunConfig& config, int64_t channels, int64_t image_side, int64_t patch,
                 int64_t classes)
    : patch_(patch) {
  const auto& model = config.model;
  const int64_t patches = (image_side / patch) * (image_side / patch);
  init_stream("embed");
  embed_ = register_module("embed", torch::nn::Linear(channels * patch * patch, model.dim));
  positions_ = register_parameter("positions", torch::randn({1, patches, model.dim}) * 0.02);
  backbone_ = register_module("backbone", backbone_for(config, /*causal=*/false));
  init_stream("head");
  head_ = register_module("head", torch::nn::Linear(model.dim, classes));
}

torch::Tensor VitImpl::logits(const torch::Tensor& images, const RouteContext& ctx) {
  const int64_t batch = images.size(0), channels = images.size(1), grid = images.size(2) / patch_;
  auto patches = images.reshape({batch, channels, grid, patch_, grid, patch_})
                     .permute({0, 2, 4, 1, 3, 5})
                     .reshape({batch, grid * grid, channels * patch_ * patch_});  // [B, N, C*p*p]
  if (ctx.record) {
    ctx.record->compute.add("embed_head",
                            linear_flops(patches.size(0) * patches.size(1), patches.size(2),
                                         embed_->options.out_features()) +
                                linear_flops(batch, head_->options.in_features(),
                                             head_->options.out_features()));
  }
  auto h = embed_(patches) + positions_;                                            // [B, N, D]
  h = backbone_(h, ctx);                                                            // [B, N, D]
  return head_(h.mean(1));                                                          // [B, classes]
}

torch::Tensor VitImpl::predict(const Batch& batch, const RouteContext& ctx) {
  return logits(batch.input, ctx);  // [B, classes]
}

namespace {

// task.patch and task.val_size against the dataset's image side and training set size.
void check_geometry(const ImageOptions& options, int64_t side, int64_t train_images) {
  if (side % options.patch != 0) {
    throw ConfigError(fmt::format("task.patch = {}: must divide the image side {} ({})",
                                  options.patch, side, options.dataset));
  }
  if (options.val_size >= train_images) {
    throw ConfigError(fmt::format("task.val_size = {}: must be < the {} training images",
                                  options.val_size, train_images));
  }
}

// task.corruptions against the dataset: the generated suites corrupt single-channel images;
// a file suite needs its dataset and task.corruption_dir with the files.
void check_corruptions(const ImageOptions& options) {
  const DatasetInfo& info = find_dataset(options.dataset);
  const std::string listed = options.corruptions.canonical();
  int file_suites_named = 0;
  for (const auto& name : options.corruptions.names) {
    const FileSuite* files = find_file_suite(name);
    if (files == nullptr) {
      if (info.channels != 1) {
        throw ConfigError(fmt::format(
            "task.corruptions = '{}': the generated suite {} corrupts single-channel images; "
            "for {} use the released files ({}_c with task.corruption_dir; docs/data.md)",
            listed, name, options.dataset, options.dataset));
      }
      continue;
    }
    if (options.dataset != files->dataset) {
      throw ConfigError(fmt::format("task.corruptions = '{}': {} corrupts {}'s test set, not {}",
                                    listed, name, files->dataset, options.dataset));
    }
    if (options.corruption_dir.empty()) {
      throw ConfigError(fmt::format("task.corruptions = '{}': {} needs task.corruption_dir, the "
                                    "folder of the released files (docs/data.md)",
                                    listed, name));
    }
    if (++file_suites_named > 1) {
      throw ConfigError(fmt::format("task.corruptions = '{}': one released suite per run "
                                    "(task.corruption_dir is one folder)",
                                    listed));
    }
    check_file_suite(*files, options.corruption_dir, info);
  }
}

}  // namespace

void ImageTask::check(const ImageOptions& options, const RunConfig&) {
  const DatasetInfo& info = find_dataset(options.dataset);
  const int64_t train_images = check_dataset_files(dataset_request(options));
  check_geometry(options, info.side, train_images);
  check_corruptions(options);
  if (options.routing_replay && options.corruptions.names.empty()) {
    throw ConfigError("task.routing_replay = true: replays the clean images' routes on corrupted "
                      "ones, so it needs task.corruptions");
  }
}

CorruptionSuites CorruptionSuites::parse(const std::string& text) {
  std::vector<std::string> declared;
  for (const auto& suite : ImageTask::metrics().suites) declared.push_back(suite.name);
  CorruptionSuites listed;
  if (text.find_first_not_of(' ') == std::string::npos) return listed;
  for (const auto& item : split_text(text + ",", ',')) {
    const auto first = item.find_first_not_of(' ');
    const std::string name =
        first == std::string::npos ? "" : item.substr(first, item.find_last_not_of(' ') - first + 1);
    if (std::find(declared.begin(), declared.end(), name) == declared.end()) {
      throw ConfigError(fmt::format("unknown suite '{}' ({})", name, fmt::join(declared, ", ")));
    }
    if (std::find(listed.names.begin(), listed.names.end(), name) != listed.names.end()) {
      throw ConfigError(fmt::format("suite {} is listed twice", name));
    }
    listed.names.push_back(name);
  }
  std::vector<std::string> in_order;
  for (const auto& name : declared) {
    if (std::find(listed.names.begin(), listed.names.end(), name) != listed.names.end()) {
      in_order.push_back(name);
    }
  }
  listed.names = in_order;
  return listed;
}

std::string CorruptionSuites::canonical() const { return fmt::format("{}", fmt::join(names, ",")); }

ImageTask::ImageTask(const ImageOptions& options, const RunConfig& config)
    : options_(options),
      info_(find_dataset(options.dataset)),
      seed_(static_cast<uint64_t>(config.seed)),
      classes_(dataset_classes(dataset_request(options))),
      sampler_(1, 0) {
  LoadedDataset data = load_dataset(dataset_request(options));
  files_ = data.files;
  const FileSuite* file_suite = nullptr;
  for (const auto& name : options.corruptions.names) {
    if ((file_suite = find_file_suite(name)) != nullptr) break;
  }
  if (file_suite != nullptr) {
    const auto files = file_suite_paths(*file_suite, options.corruption_dir);
    files_.insert(files_.end(), files.begin(), files.end());
  }
  test_ = data.test;
  const int64_t total = data.train.images.size(0);
  check_geometry(options, info_.side, total);
  int64_t train_count = total - options.val_size;
  if (options.train_limit > 0) train_count = std::min(train_count, options.train_limit);
  train_ = {data.train.images.narrow(0, 0, train_count), data.train.labels.narrow(0, 0, train_count)};
  val_ = {data.train.images.narrow(0, total - options.val_size, options.val_size),
          data.train.labels.narrow(0, total - options.val_size, options.val_size)};
  sampler_ = EpochSampler(train_count, seed_);
}

std::shared_ptr<TaskModel> ImageTask::build_model(const RunConfig& config) {
  return std::make_shared<VitImpl>(config, info_.channels, info_.side, options_.patch, classes_);
}

Batch ImageTask::train_batch(int64_t step, int64_t batch_size) {
  auto indices = torch::tensor(sampler_.batch(step, batch_size), torch::kLong);
  auto images = train_.images.index_select(0, indices);  // [B, C, H, W] uint8
  if (options_.augment == "crop_flip") images = crop_flip(images, options_.crop_padding, seed_, step);
  return {normalise_pixels(images, info_), train_.labels.index_select(0, indices)};
}

Batch ImageTask::probe_batch(int64_t count) {
  Rng rng = Rng::keyed({seed_, fnv1a("probe")});
  auto indices = torch::tensor(sample_without_replacement(val_.images.size(0), count, rng), torch::kLong);
  return {normalise_pixels(val_.images.index_select(0, indices), info_),
          val_.labels.index_select(0, indices)};
}

ImageSplit ImageTask::split(const std::string& name) const {
  if (name == "train") return train_;
  if (name == "val") return val_;
  if (name == "test") return test_;
  if (SplitId::parse(name).kind == SplitId::Kind::Corruption) return corrupted_test(name);
  throw Error(fmt::format("image task has no split '{}' (train, val, test)", name));
}

// "SUITE:NAME" or "SUITE:NAME:SEVERITY" -> the corrupted (first corruption_examples) test
// images: generated, or read from the released files.
ImageSplit ImageTask::corrupted_test(const std::string& name) const {
  const SplitId id = SplitId::parse(name);
  const int64_t severity = std::max<int64_t>(id.severity, 1);
  if (const FileSuite* files = find_file_suite(id.base)) {
    ImageSplit read = read_file_corruption(*files, options_.corruption_dir, id.corruption, severity,
                                           options_.corruption_examples);
    check_label_range(read.labels, classes_, fmt::format("{} in '{}'", name, options_.corruption_dir));
    return read;
  }
  const CorruptionEntry& corruption = find_corruption(id.base, id.corruption);
  int64_t count = test_.images.size(0);
  if (options_.corruption_examples > 0) count = std::min(count, options_.corruption_examples);
  const std::string key = fmt::format("{}|{}|{}|{}|{}", options_.dataset,
                                      dataset_dir(dataset_request(options_)), seed_, name, count);
  auto pixels = corruption_cache().get(key, [&] {
    return corrupt_images(test_.images.narrow(0, 0, count).squeeze(1), corruption, severity, seed_)
        .unsqueeze(1);
  });
  return {pixels, test_.labels.narrow(0, 0, count)};
}

const TaskMetrics& ImageTask::metrics() {
  static const TaskMetrics declared = [] {
    TaskMetrics m;
    m.task = "image";
    m.metrics = {{"accuracy", Better::Higher, "share of images classified correctly"},
                 {"loss", Better::Lower, "mean cross-entropy (nats)"},
                 {"mean_error", Better::Lower, "mean of 1 - accuracy over a corruption suite"},
                 {"routing_flip", Better::Lower,
                  "share of tokens whose selected experts a corruption changed (task.routing_replay)"}};
    m.main = {"accuracy"};
    const std::vector<std::pair<const char*, const char*>> suites = {
        {"fmnist_c", "the 15 MNIST-C corruptions at their fixed severity, generated"},
        {"cifar_c", "the 15 CIFAR-10-C corruptions, severities 1-5, generated single-channel"},
        {"cifar10_c", "CIFAR-10-C, the released files"},
        {"cifar100_c", "CIFAR-100-C, the released files"},
        {"mnist_c", "MNIST-C, the released files"}};
    for (const auto& [name, help] : suites) {
      const FileSuite* files = find_file_suite(name);
      CorruptionSuite suite{name, {}, 1, "accuracy", help};
      for (const auto& corruption : suite_corruptions(files != nullptr ? files->twin : name)) {
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
  for (const auto& name : options_.corruptions.names) {
    const auto suite = metrics().suite(name).splits();
    splits.insert(splits.end(), suite.begin(), suite.end());
  }
  if (options_.routing_replay) {
    for (const auto& name : options_.corruptions.names) {
      for (const auto& split : metrics().suite(name).splits()) {
        splits.push_back(SplitId::parse(split).under_router(kCleanRoutes).text());
      }
    }
  }
  for (const auto& attack : options_.attacks.attacks) {
    splits.push_back(SplitId::test_variant(attack.label()).text());
  }
  return splits;
}

namespace {

// Means of values added under names, in the order the names were first seen.
class NamedMeans {
 public:
  void add(const std::string& name, double value) {
    auto found = std::find_if(sums_.begin(), sums_.end(), [&](const auto& entry) { return entry.first == name; });
    if (found == sums_.end()) found = sums_.insert(sums_.end(), {name, {0.0, 0}});
    found->second.first += value;
    found->second.second += 1;
  }
  void append_to(MetricValues& out) const {
    for (const auto& [name, sum] : sums_) out.emplace_back(name, sum.first / static_cast<double>(sum.second));
  }

 private:
  std::vector<std::pair<std::string, std::pair<double, int64_t>>> sums_;  // name -> (sum, count)
};

}  // namespace

MetricValues ImageTask::derived_summaries(const MetricValues& finals) const {
  NamedMeans errors, flips;
  for (const auto& [name, value] : finals) {
    const auto slash = name.find('/');
    if (slash == std::string::npos) continue;
    const std::string metric = name.substr(slash + 1);
    if (metric != "accuracy" && metric != "moe/routing_flip") continue;
    const SplitId split = SplitId::parse(name.substr(0, slash));
    if (split.kind != SplitId::Kind::Corruption) continue;  // clean, or an attack
    SplitId suite = split;  // "SUITE[@ROUTER]"
    suite.kind = SplitId::Kind::Suite;
    if (metric == "moe/routing_flip") {
      flips.add(suite.text() + "/moe/routing_flip", value);
      continue;
    }
    errors.add(suite.text() + "/mean_error", 1.0 - value);
    if (split.severity > 0) {  // "SUITE:NAME[@ROUTER]" over the severities
      SplitId corruption = split;
      corruption.severity = 0;
      errors.add(corruption.text() + "/mean_error", 1.0 - value);
    }
  }
  MetricValues derived;
  errors.append_to(derived);
  flips.append_to(derived);
  return derived;
}

namespace {

// Accuracy and mean loss of logits [b, classes] accumulated over batches.
struct Scores {
  double loss_sum = 0.0;
  int64_t correct = 0, count = 0;

  void add(const torch::Tensor& logits, const torch::Tensor& labels) {
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, labels,
                    torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += logits.argmax(-1).eq(labels).sum().item<int64_t>();
    count += labels.size(0);
  }
  MetricValues values() const {
    return {{"accuracy", static_cast<double>(correct) / count}, {"loss", loss_sum / count}};
  }
};

RouteContext eval_context(const RunConfig& config) {
  RouteContext ctx;
  ctx.training = false;
  ctx.seed = config.seed;
  return ctx;
}

}  // namespace

MetricValues ImageTask::evaluate(TaskModel& model, const std::string& split_name,
                                 const RunConfig& config, torch::Device device) {
  auto& vit = dynamic_cast<VitImpl&>(model);
  for (const auto& attack : options_.attacks.attacks) {
    if (split_name == SplitId::test_variant(attack.label()).text()) return evaluate_attack(vit, attack, config, device);
  }
  if (options_.routing_replay && SplitId::parse(split_name).kind == SplitId::Kind::Corruption) {
    return evaluate_replayed(vit, SplitId::parse(split_name), config, device);
  }
  const ImageSplit data = split(split_name);
  int64_t count = data.images.size(0);
  if (config.eval.max_examples > 0) count = std::min(count, config.eval.max_examples);
  torch::NoGradGuard no_grad;
  const RouteContext ctx = eval_context(config);
  Scores scores;
  for (int64_t start = 0; start < count; start += config.eval.batch_size) {
    const int64_t size = std::min(config.eval.batch_size, count - start);
    auto images = normalise_pixels(data.images.narrow(0, start, size), info_).to(device);
    auto labels = data.labels.narrow(0, start, size).to(device);
    scores.add(vit.logits(images, ctx), labels);  // [b, classes]
  }
  return scores.values();
}

// Robust accuracy: each batch of the (first attack_examples) test images replaced by its
// adversarial version, then classified.
MetricValues ImageTask::evaluate_attack(VitImpl& vit, const AttackSpec& attack,
                                        const RunConfig& config, torch::Device device) const {
  int64_t count = test_.images.size(0);
  if (options_.attack_examples > 0) count = std::min(count, options_.attack_examples);
  if (config.eval.max_examples > 0) count = std::min(count, config.eval.max_examples);
  const RouteContext ctx = eval_context(config);
  const PixelLogits pixel_logits = [&](const torch::Tensor& pixels) {
    return vit.logits(normalise_unit(pixels, info_), ctx);  // [b, classes]
  };
  Scores scores;
  for (int64_t start = 0; start < count; start += config.eval.batch_size) {
    const int64_t size = std::min(config.eval.batch_size, count - start);
    auto pixels = (test_.images.narrow(0, start, size).to(torch::kFloat) / 255.0).to(device);
    auto labels = test_.labels.narrow(0, start, size).to(device);
    auto adversarial = attack_pixels(pixel_logits, pixels, labels, attack, seed_, start);
    torch::NoGradGuard no_grad;
    scores.add(pixel_logits(adversarial), labels);
  }
  return scores.values();
}

MetricValues ImageTask::evaluate_replayed(VitImpl& vit, const SplitId& id, const RunConfig& config,
                                          torch::Device device) const {
  const bool clean_routes = id.router == kCleanRoutes;
  MOELAB_CHECK(clean_routes || id.router.empty(), "image task: no routing rule '{}' in '{}'", id.router, id.text());
  const ImageSplit data = corrupted_test(id.under_router("").text());
  int64_t count = data.images.size(0);
  if (config.eval.max_examples > 0) count = std::min(count, config.eval.max_examples);
  if (!torch::equal(data.labels.narrow(0, 0, count), test_.labels.narrow(0, 0, count))) {
    throw Error(fmt::format("task.routing_replay: the images of '{}' are not the test images in "
                            "their order (their labels differ), so they have no clean routes",
                            id.under_router("").text()));
  }
  torch::NoGradGuard no_grad;
  const RouteContext ctx = eval_context(config);
  auto with = [&ctx](RouteReplay& replay) {
    RouteContext replaying = ctx;
    replaying.replay = &replay;
    return replaying;
  };
  Scores scores;
  std::map<int64_t, std::pair<double, int64_t>> flips;  // block -> (changed tokens, tokens)
  for (int64_t start = 0; start < count; start += config.eval.batch_size) {
    const int64_t size = std::min(config.eval.batch_size, count - start);
    auto clean = normalise_pixels(test_.images.narrow(0, start, size), info_).to(device);
    auto corrupted = normalise_pixels(data.images.narrow(0, start, size), info_).to(device);
    auto labels = data.labels.narrow(0, start, size).to(device);
    RouteReplay clean_decisions;
    vit.logits(clean, with(clean_decisions));
    if (clean_routes) {
      clean_decisions.mode = RouteReplay::Mode::Replay;
      scores.add(vit.logits(corrupted, with(clean_decisions)), labels);  // [b, classes]
      continue;
    }
    RouteReplay own_decisions;
    scores.add(vit.logits(corrupted, with(own_decisions)), labels);  // [b, classes]
    for (const auto& [block, recorded] : clean_decisions.routes) {
      const RouteResult& before = recorded.route;
      const RouteResult& after = own_decisions.routes.at(block).route;
      if (!before.token.defined()) continue;  // soft routing: no selected sets
      const auto changed = changed_share(selected_sets(before.token, before.expert, recorded.tokens),
                                         selected_sets(after.token, after.expert, recorded.tokens));
      flips[block].first += changed.item<double>() * static_cast<double>(recorded.tokens);
      flips[block].second += recorded.tokens;
    }
  }
  MetricValues values = scores.values();
  double sum = 0;
  for (const auto& [block, tally] : flips) {
    const double share = tally.first / static_cast<double>(tally.second);
    values.emplace_back(fmt::format("moe/l{}/routing_flip", block), share);
    sum += share;
  }
  if (!flips.empty()) values.emplace_back("moe/routing_flip", sum / static_cast<double>(flips.size()));
  return values;
}

}  // namespace moelab
