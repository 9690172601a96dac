// The shared training loop.
#include "harness/train/trainer.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "harness/train/checkpoint.h"
#include "harness/core/rng.h"
#include "routers/registry.h"
#include "tasks/registry.h"

namespace moelab {
namespace {

constexpr double kPi = 3.14159265358979323846;
std::atomic<bool> g_interrupt{false};

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainConfig& train,
                                                        std::vector<torch::Tensor> params) {
  if (train.optimizer == "adam") {
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(train.lr)
                    .betas({train.beta1, train.beta2})
                    .weight_decay(train.weight_decay));
  }
  return std::make_unique<torch::optim::AdamW>(
      params, torch::optim::AdamWOptions(train.lr)
                  .betas({train.beta1, train.beta2})
                  .weight_decay(train.weight_decay));
}

// Progress: a redrawn line with ETA on a terminal, plain lines at log steps otherwise.
class Progress {
 public:
  Progress(int64_t first, int64_t total)
      : first_(first), total_(total), interactive_(isatty(fileno(stderr)) != 0) {}

  void update(int64_t step, double loss, bool log_step) {
    if (!interactive_ && !log_step) return;
    const double elapsed = seconds();
    const double rate = (step - first_) / std::max(elapsed, 1e-9);
    const double eta = rate > 0 ? (total_ - step) / rate : 0.0;
    std::string line = fmt::format("step {:>6}/{} | loss {:.4f} | {:.1f} steps/s | ETA {:.0f}s",
                                   step, total_, loss, rate, eta);
    if (interactive_) {
      fmt::print(stderr, "\r{}\x1b[K", line);
      if (step == total_) fmt::print(stderr, "\n");
    } else {
      fmt::print(stderr, "{}\n", line);
    }
    std::fflush(stderr);
  }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  int64_t first_, total_;
  bool interactive_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// The global generator (dropout, router noise) is reseeded from (seed, step) before every
// step, so a run resumed from a checkpoint draws exactly what the uninterrupted run drew.
void seed_step(int64_t seed, int64_t step) {
  torch::manual_seed(
      derived_seed({static_cast<uint64_t>(seed), fnv1a("step"), static_cast<uint64_t>(step)}));
}

// Gradients are reset to undefined, not to zero (PyTorch 2's default, explicit here because
// 1.13 zeroes): a parameter outside this step's graph (an expert that got no tokens, a frozen
// stage) is then skipped by the optimizer, so its update does not depend on whether it had a
// gradient before, which is also what makes a resumed run equal the uninterrupted one.
void clear_gradients(torch::nn::Module& model) {
  for (auto& parameter : model.parameters()) parameter.mutable_grad() = torch::Tensor();
}

torch::Tensor to_device(const torch::Tensor& t, torch::Device device) {
  return t.defined() ? t.to(device) : t;
}

// Converts the backbone's routing metrics with one host transfer; returns the layer means.
MetricValues log_routing_metrics(Transformer backbone, int64_t step, MetricLog& log) {
  auto metrics = backbone->routing_metrics();
  MetricValues means;
  if (metrics.empty()) return means;
  std::vector<torch::Tensor> values;
  for (const auto& entry : metrics) values.push_back(entry.second.reshape({1}));
  auto host = torch::cat(values).to(torch::kCPU, torch::kDouble);
  auto data = host.accessor<double, 1>();
  for (size_t i = 0; i < metrics.size(); ++i) {
    const std::string name = "moe/" + metrics[i].first;
    log.add(step, "train", name, data[static_cast<int64_t>(i)]);
    if (metrics[i].first.find('/') == std::string::npos) {
      means.emplace_back("train/" + name, data[static_cast<int64_t>(i)]);
    }
  }
  return means;
}

void evaluate_splits(const std::vector<std::string>& splits, const RunConfig& config, Task& task,
                     TaskModel& model, MetricLog& log, int64_t step, torch::Device device,
                     MetricValues* summaries, const std::string& label_suffix = "") {
  model.eval();
  const TaskMetrics& declared = task_metrics(config.task.name);
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < splits.size(); ++i) {
    const std::string label = splits[i] + label_suffix;
    for (const auto& [name, value] : task.evaluate(model, splits[i], config, device)) {
      declared.find(name);  // every reported metric has a declared direction
      log.add(step, label, name, value);
      if (summaries) summaries->emplace_back(label + "/" + name, value);
    }
    if (splits.size() > 3) {  // long final evaluations (corruption suites): visible progress
      log.flush();
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      fmt::print(stderr, "evaluated {} ({}/{}, {:.0f}s)\n", label, i + 1, splits.size(), seconds);
    }
  }
  model.train();
}

// Builds the eval.router_override router for every MoE layer, carrying over the trained
// router's gate weights, and swaps it in; returns the trained routers to restore.
std::vector<std::shared_ptr<Router>> swap_in_override(Transformer backbone, const RunConfig& config,
                                                      torch::Device device) {
  const PluginChoice& choice = config.eval.router_override;
  std::vector<std::shared_ptr<Router>> trained;
  int64_t layer_index = 0;
  for (auto& layer : backbone->moe_layers()) {
    auto source = std::dynamic_pointer_cast<LogitRouter>(layer->router_ptr());
    auto replacement = make_router(choice, RouterShape{source ? source->gate()->weight.size(1) : 0,
                                                       config.model.moe.experts, config.seed,
                                                       layer_index++});
    auto target = std::dynamic_pointer_cast<LogitRouter>(replacement);
    if (!source || !target) {
      throw ConfigError(fmt::format(
          "eval.router_override: swapping '{}' for '{}' needs two routers that decide from "
          "linear router logits",
          config.router.name, choice.name));
    }
    {
      torch::NoGradGuard no_grad;
      target->gate()->weight.copy_(source->gate()->weight);
    }
    replacement->to(device);
    trained.push_back(layer->swap_router(replacement));
  }
  return trained;
}

}  // namespace

void request_interrupt() { g_interrupt = true; }
bool interrupt_requested() { return g_interrupt; }
void clear_interrupt_request() { g_interrupt = false; }

double learning_rate(const TrainConfig& train, int64_t step) {
  if (step <= train.warmup_steps) {
    return train.lr * static_cast<double>(step) / std::max<int64_t>(train.warmup_steps, 1);
  }
  const double span = std::max<int64_t>(train.steps - train.warmup_steps, 1);
  const double progress = std::min(1.0, static_cast<double>(step - train.warmup_steps) / span);
  const double cosine = 0.5 * (1.0 + std::cos(kPi * progress));
  return train.lr * (train.min_lr_ratio + (1.0 - train.min_lr_ratio) * cosine);
}

MetricValues train_and_evaluate(const RunConfig& config, Task& task, TaskModel& model,
                                MetricLog& log, torch::Device device, bool resume,
                                TrainingHooks* hooks) {
  const TrainConfig& train = config.train;
  model.to(device);
  if (hooks) hooks->before_training(model, log, resume);
  model.train();
  auto optimizer = make_optimizer(train, model.parameters());
  Transformer backbone = model.backbone();
  auto moe_layers = backbone->moe_layers();
  const std::string checkpoint = checkpoint_path(config);
  int64_t first_step = 0;
  if (resume) {
    first_step = load_checkpoint(checkpoint, model, *optimizer);
    for (auto& layer : moe_layers) layer->router().on_resume(first_step);
  }
  Progress progress(first_step, train.steps);
  double last_loss = std::nan("");
  MetricValues last_routing;

  for (int64_t step = first_step + 1; step <= train.steps; ++step) {
    if (interrupt_requested()) {
      if (step - 1 > first_step) save_checkpoint(checkpoint, model, *optimizer, step - 1);
      throw InterruptedError(fmt::format("interrupted after step {} (checkpoint saved)", step - 1));
    }
    seed_step(config.seed, step);
    const double lr = learning_rate(train, step);
    for (auto& group : optimizer->param_groups()) group.options().set_lr(lr);
    const bool log_step = step % train.log_every == 0 || step == train.steps;
    Batch batch = task.train_batch(step - 1, train.batch_size);
    batch.input = to_device(batch.input, device);
    batch.target = to_device(batch.target, device);
    RouteContext ctx;
    ctx.training = true;
    ctx.step = step;
    ctx.seed = config.seed;
    ctx.collect_metrics = log_step;

    auto logits = model.predict(batch, ctx);  // [N, C]
    auto loss = task_loss(logits, batch);
    auto aux_loss = backbone->aux_loss().to(loss.device());
    auto total = loss + aux_loss;
    const auto extra = hooks ? hooks->extra_losses(batch, logits) : std::vector<NamedTensor>{};
    for (const auto& entry : extra) total = total + entry.second;
    // Reading the loss syncs a GPU, so there it is checked at logging steps only.
    if (log_step || !device.is_cuda()) {
      last_loss = loss.item<double>();
      if (!std::isfinite(last_loss) || !std::isfinite(total.item<double>())) {
        throw DivergedError(step, fmt::format("loss became {} at step {}", last_loss, step));
      }
    }
    clear_gradients(model);
    total.backward();
    double grad_norm = 0.0;
    if (train.grad_clip > 0) {
      grad_norm = torch::nn::utils::clip_grad_norm_(model.parameters(), train.grad_clip);
    }
    optimizer->step();
    for (auto& layer : moe_layers) layer->router().on_step_end(step);

    if (log_step) {
      log.add(step, "train", "loss", last_loss);
      log.add(step, "train", "aux_loss", aux_loss.item<double>());
      for (const auto& [name, value] : extra) log.add(step, "train", name, value.item<double>());
      log.add(step, "train", "lr", lr);
      if (train.grad_clip > 0) log.add(step, "train", "grad_norm", grad_norm);
      last_routing = log_routing_metrics(backbone, step, log);
    }
    if (train.eval_every > 0 && step % train.eval_every == 0 && step != train.steps) {
      evaluate_splits(task.periodic_splits(), config, task, model, log, step, device, nullptr);
    }
    if (log_step) log.flush();
    if (train.checkpoint_every > 0 && step % train.checkpoint_every == 0 && step != train.steps) {
      save_checkpoint(checkpoint, model, *optimizer, step);
    }
    progress.update(step, last_loss, log_step);
  }
  if (first_step < train.steps) save_checkpoint(checkpoint, model, *optimizer, train.steps);
  if (hooks) hooks->after_training(model);

  // After a resume these cover the resumed part only.
  const double train_seconds = progress.seconds();
  MetricValues summaries = {{"train/loss", last_loss},
                            {"train/seconds", train_seconds},
                            {"train/steps_per_second", (train.steps - first_step) / train_seconds}};
  summaries.insert(summaries.end(), last_routing.begin(), last_routing.end());
  evaluate_splits(task.final_splits(), config, task, model, log, train.steps, device, &summaries);
  if (config.eval.router_override.name != "none") {
    auto trained = swap_in_override(backbone, config, device);
    evaluate_splits(task.final_splits(), config, task, model, log, train.steps, device, &summaries,
                    "@" + config.eval.router_override.name);
    auto layers = backbone->moe_layers();
    for (size_t i = 0; i < layers.size(); ++i) layers[i]->swap_router(trained[i]);
  }
  const MetricValues derived = task.derived_summaries(summaries);
  for (const auto& [name, value] : derived) task_metrics(config.task.name).find(metric_of(name));
  summaries.insert(summaries.end(), derived.begin(), derived.end());
  if (hooks) {
    const MetricValues extra_summaries = hooks->summaries(model, summaries);
    summaries.insert(summaries.end(), extra_summaries.begin(), extra_summaries.end());
  }
  log.flush();
  summaries.emplace_back("train/log_seconds", log.seconds());
  return summaries;
}

}  // namespace moelab
