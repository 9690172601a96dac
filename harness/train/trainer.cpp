// The shared training loop.
#include "harness/train/trainer.h"
#include "harness/model/flops.h"
#include "harness/model/precision.h"
#include "harness/model/routing_diagnostics.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "harness/core/failpoint.h"
#include "harness/core/rng.h"
#include "harness/train/checkpoint.h"
#include "harness/train/routing_probe.h"
#include "routers/registry.h"
#include "tasks/registry.h"

namespace moelab {
namespace {

constexpr double kPi = 3.14159265358979323846;

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainConfig& train,
                                                        std::vector<torch::Tensor> params) {
  if (train.optimizer == "adam") {
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(train.lr)
                    .betas({train.beta1, train.beta2})
                    .weight_decay(train.weight_decay));
  }
  if (train.optimizer == "sgd") {
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(train.lr)
                    .momentum(train.beta1)
                    .weight_decay(train.weight_decay));
  }
  return std::make_unique<torch::optim::AdamW>(
      params, torch::optim::AdamWOptions(train.lr)
                  .betas({train.beta1, train.beta2})
                  .weight_decay(train.weight_decay));
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Progress: a redrawn line with ETA on a terminal, plain lines at log steps otherwise.
// The ETA follows the share of the run done (of train.steps, or of a budget).
class Progress {
 public:
  Progress(int64_t first, double first_fraction)
      : first_(first), first_fraction_(first_fraction), interactive_(isatty(fileno(stderr)) != 0) {}

  // `where`: the step and how far the run is ("   120/400"); `fraction`: the share done.
  void update(int64_t step, const std::string& where, double fraction, double loss, bool log_step,
              bool last) {
    if (!interactive_ && !log_step && !last) return;
    const double elapsed = seconds_since(start_);
    const double rate = (step - first_) / std::max(elapsed, 1e-9);
    const double done = fraction - first_fraction_;
    const double eta = done > 0 ? elapsed * (1.0 - fraction) / done : 0.0;
    std::string line = fmt::format("step {} | loss {:.4f} | {:.1f} steps/s | ETA {:.0f}s", where,
                                   loss, rate, std::max(eta, 0.0));
    if (interactive_) {
      fmt::print(stderr, "\r{}\x1b[K", line);
      if (last) fmt::print(stderr, "\n");
    } else {
      fmt::print(stderr, "{}\n", line);
    }
    std::fflush(stderr);
  }
 private:
  int64_t first_;
  double first_fraction_;
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
MetricValues log_routing_metrics(const RoutingRecord& record, int64_t step, MetricLog& log) {
  auto metrics = record.routing_metrics();
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

// Evaluates `splits` at `step` and writes their rows, under "SPLIT@ROUTER" when the model
// routes by a swapped-in `swap_router`. The final evaluation (`summaries` set) stops between
// splits on an interrupt and reports progress through long suites.
void evaluate_splits(const std::vector<std::string>& splits, const RunConfig& config, Task& task,
                     TaskModel& model, MetricLog& log, int64_t step, torch::Device device,
                     MetricValues* summaries, const std::string& swap_router = "") {
  model.eval();
  const TaskMetrics& declared = task_metrics(config.task.name);
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < splits.size(); ++i) {
    if (summaries) {
      throw_if_interrupted(fmt::format(
          "during the final evaluation (checkpoint at step {}; --resume evaluates again)", step));
    }
    SplitId id = SplitId::parse(splits[i]);
    if (!swap_router.empty()) {
      if (!id.router.empty()) continue;  // a split with its own routing rule (routing replay)
      id = id.under_router(swap_router);
    }
    const std::string label = id.text();
    MetricValues values;
    {
      AutocastGuard autocast(parse_precision(config.train.precision), device);
      values = task.evaluate(model, splits[i], config, device);
    }
    for (const auto& [name, value] : values) {
      declared.find(metric_of(name));  // every reported metric has a declared direction
      log.add(step, label, name, value);
      if (summaries) summaries->emplace_back(label + "/" + name, value);
    }
    log.flush();
    failpoint(summaries ? "final_split" : "evaluation_split");
    if (splits.size() > 3) {  // long final evaluations (corruption suites): visible progress
      fmt::print(stderr, "evaluated {} ({}/{}, {:.0f}s)\n", label, i + 1, splits.size(),
                 seconds_since(start));
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
    auto replacement = make_router(choice, router_shape(config.model, config.seed, layer_index++));
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

double learning_rate(const TrainConfig& train, int64_t step) {
  const double span = std::max<int64_t>(train.steps - train.warmup_steps, 1);
  return learning_rate(train, step, static_cast<double>(step - train.warmup_steps) / span);
}

double learning_rate(const TrainConfig& train, int64_t step, double decay_done) {
  if (step <= train.warmup_steps) {
    return train.lr * static_cast<double>(step) / std::max<int64_t>(train.warmup_steps, 1);
  }
  const double progress = std::clamp(decay_done, 0.0, 1.0);
  const double cosine = 0.5 * (1.0 + std::cos(kPi * progress));
  return train.lr * (train.min_lr_ratio + (1.0 - train.min_lr_ratio) * cosine);
}

namespace {

// The shared loop's state and its steps: start (hooks, optimizer, checkpoint), one training
// step, the periodic work after it, and the final evaluation.
class TrainingLoop {
 public:
  TrainingLoop(const RunSpec& run, Task& task, TaskModel& model, MetricLog& log,
               torch::Device device, TrainingHooks* hooks)
      : config_(run.config), train_(run.config.train), task_(task), model_(model), log_(log),
        device_(device), hooks_(hooks), checkpoint_(run.checkpoint), probe_(run, task, log, device),
        balance_scope_(train_.aux_scope == "global_batch" ? BalanceScope::GlobalBatch
                       : train_.aux_scope == "sequence"   ? BalanceScope::Sequence
                                                          : BalanceScope::MicroBatch),
        precision_(parse_precision(train_.precision)) {}

  // Moves the model, runs the hooks, builds the optimizer and loads the checkpoint on resume;
  // returns the last step already done.
  int64_t start(bool resume) {
    model_.to(device_);
    if (hooks_) hooks_->before_training(model_, log_, resume);
    model_.train();
    optimizer_ = make_optimizer(train_, model_.parameters());
    moe_layers_ = model_.backbone()->moe_layers();
    if (resume) {
      resumed_ = load_checkpoint(checkpoint_, model_, *optimizer_);
      flops_ = resumed_.flops;
      tokens_ = resumed_.tokens;
      decay_start_ = resumed_.decay_start;
      for (auto& layer : moe_layers_) layer->router().on_resume(resumed_.step);
      if (budget().set() && std::isnan(spent())) {
        throw Error(fmt::format("checkpoint '{}' predates compute recording: a run with "
                                "train.budget cannot resume from it (delete it to start over)",
                                checkpoint_));
      }
    }
    last_step_ = resumed_.step;
    probe_.start(resume, resumed_.step);
    if (!resume && probe_.tracing()) probe_.measure(model_, 0);  // the routing at initialisation
    if (budget().set() && train_.warmup_steps == 0) decay_start_ = 0.0;
    started_ = std::chrono::steady_clock::now();
    return resumed_.step;
  }

  const TrainBudget& budget() const { return train_.budget; }
  // The run's cost so far in the budget's unit (steps without one).
  double spent() const { return budget().spent(static_cast<double>(last_step_), tokens_, flops_); }
  // Training ends at train.steps or, before it, where the budget is spent.
  bool finished() const {
    return last_step_ >= train_.steps || (budget().set() && spent() >= budget().amount);
  }
  // The share of the run done: of the budget, or of train.steps.
  double fraction_done() const {
    return budget().set() ? spent() / budget().amount
                          : static_cast<double>(last_step_) / static_cast<double>(train_.steps);
  }
  // The progress line's position: "   120/400", or "   120 (31% of 2e+10 flops)".
  std::string position() const {
    if (!budget().set()) return fmt::format("{:>6}/{}", last_step_, train_.steps);
    return fmt::format("{:>6} ({:.0f}% of {:.4g} {})", last_step_, 100 * fraction_done(),
                       budget().amount, budget().unit_name());
  }

  // Whether `step` logs its train metrics: every log_every steps and the last one. A budget's
  // last step is known only once it is taken, so the steps from where two more steps at the
  // mean cost so far would spend it are logged too (for steps and tokens, exactly the last).
  bool log_step(int64_t step) const {
    if (step % train_.log_every == 0 || step == train_.steps) return true;
    if (!budget().set() || last_step_ == 0) return false;
    const double mean_cost = spent() / static_cast<double>(last_step_);
    const double margin = budget().unit == TrainBudget::Unit::Flops ? 2.0 : 1.0;
    return spent() + margin * mean_cost >= budget().amount;
  }

  // Training time of every attempt so far.
  double train_seconds() const { return resumed_.train_seconds + seconds_since(started_); }

  void stop_if_interrupted(int64_t step) {
    if (!interrupt_requested()) return;
    if (step - 1 > resumed_.step) save(step - 1);
    log_.flush();
    throw InterruptedError(fmt::format("interrupted after step {} (checkpoint saved)", step - 1));
  }

  // Forward, losses and backward of each micro-batch, then the optimizer step; the train
  // metrics at logging steps.
  void step(int64_t step, bool log_step) {
    seed_step(config_.seed, step);
    const double lr = step_learning_rate(step);
    for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);
    // The step's examples: what one batch of batch_size x grad_accum would hold, in order.
    const Batch batch = task_.train_batch(step - 1, train_.batch_size * train_.grad_accum);
    RoutingRecord record;
    StepCounts step_counts;
    StepLosses losses;
    clear_gradients(model_);
    for (int64_t micro = 0; micro < train_.grad_accum; ++micro) {
      micro_step(micro_batch(batch, micro), step, micro, log_step, record, step_counts, losses);
    }
    if (losses.measured) last_loss_ = losses.task;
    double grad_norm = 0.0;
    if (train_.grad_clip > 0) {
      grad_norm = torch::nn::utils::clip_grad_norm_(model_.parameters(), train_.grad_clip);
    }
    optimizer_->step();
    for (auto& layer : moe_layers_) layer->router().on_step_end(step);
    flops_ += kTrainingFactor * record.compute.total();
    tokens_ += static_cast<double>(record.compute.tokens);
    last_step_ = step;
    if (budget().set() && step == train_.warmup_steps) decay_start_ = spent();
    if (!log_step) return;
    log_.add(step, "train", "flops", flops_);
    log_.add(step, "train", "tokens", tokens_);
    log_.add(step, "train", "loss", last_loss_);
    log_.add(step, "train", "aux_loss", losses.aux.item<double>());
    for (const auto& [name, value] : losses.extra) log_.add(step, "train", name, value.item<double>());
    log_.add(step, "train", "lr", lr);
    if (train_.grad_clip > 0) log_.add(step, "train", "grad_norm", grad_norm);
    warn_if_sinkhorn_capped(step, log_routing_metrics(record, step, log_));
  }

  // Without a budget, the decay runs over the steps after warm-up; with one, over its cost
  // after warm-up, measured before the step (a resumed run computes the same rate).
  double step_learning_rate(int64_t step) const {
    if (!budget().set()) return learning_rate(train_, step);
    const double span = budget().amount - decay_start_;
    return learning_rate(train_, step, span > 0 ? (spent() - decay_start_) / span : 1.0);
  }

  // The step's losses, each the mean over its micro-batches (detached, for logging).
  struct StepLosses {
    double task = 0.0;
    bool measured = false;  // task was read (every step on the CPU, logging steps on a GPU)
    torch::Tensor aux;
    std::vector<NamedTensor> extra;
  };

  // Micro-batch `index` of the step's examples (batch_size of them).
  Batch micro_batch(const Batch& batch, int64_t index) const {
    if (train_.grad_accum == 1) return batch;
    const int64_t size = train_.batch_size, start = index * size;
    return {batch.input.narrow(0, start, size), batch.target.narrow(0, start, size)};
  }

  // One micro-batch: forward, its losses scaled by 1 / grad_accum (so the summed gradients
  // are those of the mean over the step's examples), backward.
  void micro_step(Batch micro, int64_t step, int64_t micro_index, bool log_step, RoutingRecord& record,
                  StepCounts& step_counts, StepLosses& losses) {
    micro.input = to_device(micro.input, device_);
    micro.target = to_device(micro.target, device_);
    RoutingRecord micro_record;
    RouteContext ctx;
    ctx.training = true;
    ctx.step = step;
    ctx.micro_batch = micro_index;
    ctx.seed = config_.seed;
    ctx.collect_metrics = log_step;
    ctx.record = &micro_record;
    ctx.balance_scope = balance_scope_;
    ctx.step_counts = &step_counts;

    const double share = 1.0 / static_cast<double>(train_.grad_accum);
    torch::Tensor logits;  // [N, C]
    {
      AutocastGuard autocast(precision_, device_);
      logits = model_.predict(micro, ctx);
    }
    logits = as_fp32(logits);  // the losses in fp32
    auto loss = task_loss(logits, micro);
    auto aux_loss = micro_record.total_aux_loss(loss.device());
    auto total = loss + aux_loss;
    const auto extra = hooks_ ? hooks_->extra_losses(micro, logits) : std::vector<NamedTensor>{};
    for (const auto& entry : extra) total = total + entry.second;
    // Reading the loss syncs a GPU, so there it is checked at logging steps only.
    if (log_step || !device_.is_cuda()) {
      const double value = loss.item<double>();
      if (!std::isfinite(value) || !std::isfinite(total.item<double>())) {
        throw DivergedError(step, fmt::format("loss became {} at step {}", value, step));
      }
      losses.task += value * share;
      losses.measured = true;
    }
    (total * share).backward();
    accumulate(losses.aux, aux_loss.detach() * share);
    for (size_t i = 0; i < extra.size(); ++i) {
      if (losses.extra.size() <= i) losses.extra.emplace_back(extra[i].first, torch::Tensor());
      accumulate(losses.extra[i].second, extra[i].second.detach() * share);
    }
    record.layer_metrics.insert(record.layer_metrics.end(), micro_record.layer_metrics.begin(),
                                micro_record.layer_metrics.end());
    record.compute.add(micro_record.compute);
  }

  static void accumulate(torch::Tensor& sum, const torch::Tensor& value) {
    sum = sum.defined() ? sum + value : value;
  }

  // Once per run: a Sinkhorn solve stopped at its iteration cap (sinkhorn_capped > 0).
  void warn_if_sinkhorn_capped(int64_t step, const MetricValues& routing_means) {
    if (warned_sinkhorn_) return;
    for (const auto& [name, value] : routing_means) {
      if (name != "train/moe/sinkhorn_capped" || !(value > 0)) continue;
      fmt::print(stderr,
                 "warning: at step {} a Sinkhorn solve stopped at router.max_iters before "
                 "router.tol (share of layers {:.2f}); its balanced plan is approximate: see "
                 "moe/sinkhorn_err, raise router.max_iters (docs/methods.md)\n",
                 step, value);
      warned_sinkhorn_ = true;
    }
  }

  // Periodic evaluation, the metric flush at logging steps, periodic checkpoints.
  void after_step(int64_t step, bool log_step) {
    if (train_.eval_every > 0 && step % train_.eval_every == 0 && !finished()) {
      evaluate_splits(task_.periodic_splits(), config_, task_, model_, log_, step, device_, nullptr);
      failpoint("after_evaluation");
    }
    if (probe_.due(step) && !finished()) probe_.measure(model_, step);
    if (log_step) log_.flush();
    if (train_.checkpoint_every > 0 && step % train_.checkpoint_every == 0 && !finished()) {
      save(step);
    }
  }

  // The final checkpoint, the hooks' end of training, the final evaluation and the summaries.
  MetricValues finish() {
    const bool trained = last_step_ > resumed_.step;  // this attempt took steps
    const double seconds = trained ? train_seconds() : resumed_.train_seconds;
    if (trained) save(last_step_);
    failpoint("after_final_checkpoint");
    if (hooks_) hooks_->after_training(model_);
    MetricValues summaries = {{"train/seconds", seconds},
                              {"train/steps", static_cast<double>(last_step_)},
                              {"train/steps_per_second", static_cast<double>(last_step_) / seconds},
                              {"train/flops", flops_},
                              {"train/tokens", tokens_},
                              {"model/parameters", parameter_count()}};
    if (budget().set()) summaries.emplace_back("train/budget_spent", fraction_done());
    add_router_erank(summaries);
    warn_if_budget_unspent();
    const MetricValues last_step = last_step_summaries();
    summaries.insert(summaries.end(), last_step.begin(), last_step.end());
    log_.delete_evaluations(last_step_);  // what an interrupted earlier attempt wrote of it
    const MetricValues probed = probe_.measure(model_, last_step_);
    summaries.insert(summaries.end(), probed.begin(), probed.end());
    evaluate_final(summaries);
    const MetricValues derived = task_.derived_summaries(summaries);
    for (const auto& [name, value] : derived) task_metrics(config_.task.name).find(metric_of(name));
    summaries.insert(summaries.end(), derived.begin(), derived.end());
    if (hooks_) {
      const MetricValues extra_summaries = hooks_->summaries(model_, summaries);
      summaries.insert(summaries.end(), extra_summaries.begin(), extra_summaries.end());
    }
    log_.flush();
    summaries.emplace_back("train/log_seconds", log_.seconds());
    return summaries;
  }

  double last_loss() const { return last_loss_; }

  // model/moe/l<block>/router_erank per MoE layer whose router has expert embeddings, and
  // their mean model/moe/router_erank (methods.md, Router diagnostics).
  void add_router_erank(MetricValues& summaries) {
    const std::vector<int64_t> blocks = moe_layer_indices(config_.model);
    double sum = 0;
    int measured = 0;
    for (size_t i = 0; i < moe_layers_.size() && i < blocks.size(); ++i) {
      const torch::Tensor embeddings = moe_layers_[i]->router().expert_embeddings();
      if (!embeddings.defined()) continue;
      const double erank = effective_rank(embeddings).item<double>();
      summaries.emplace_back(fmt::format("model/moe/l{}/router_erank", blocks[i]), erank);
      sum += erank;
      ++measured;
    }
    if (measured > 0) summaries.emplace_back("model/moe/router_erank", sum / measured);
  }

  // A budgeted run that reached train.steps first is not at the compute it was meant to be.
  void warn_if_budget_unspent() const {
    if (!budget().set() || spent() >= budget().amount) return;
    fmt::print(stderr,
               "warning: train.steps = {} ended the run at {:.1f}% of train.budget {} "
               "(train/budget_spent); raise train.steps to reach the budget\n",
               train_.steps, 100 * fraction_done(), budget().canonical());
  }

  double parameter_count() const {
    double count = 0;
    for (const auto& parameter : model_.parameters()) count += static_cast<double>(parameter.numel());
    return count;
  }

 private:
  // Writes the buffered rows, then the checkpoint: a checkpoint never covers unwritten rows.
  void save(int64_t step) {
    log_.flush();
    save_checkpoint(checkpoint_, model_, *optimizer_, {step, train_seconds(), flops_, tokens_, decay_start_});
    failpoint("after_checkpoint");
  }

  // train/loss and the layer means of the routing metrics (train/moe/<name>), read back from
  // the rows of the last step, which a run resumed after that step did not compute itself.
  MetricValues last_step_summaries() {
    MetricValues summaries;
    for (const auto& [name, value] : log_.written("train", last_step_)) {
      const bool routing_mean = name.rfind("moe/", 0) == 0 && name.find('/', 4) == std::string::npos;
      if (name == "loss" || routing_mean) summaries.emplace_back("train/" + name, value);
    }
    return summaries;
  }

  // The final splits, then again under eval.router_override when one is configured.
  void evaluate_final(MetricValues& summaries) {
    evaluate_splits(task_.final_splits(), config_, task_, model_, log_, last_step_, device_,
                    &summaries);
    if (config_.eval.router_override.name == "none") return;
    Transformer backbone = model_.backbone();
    auto trained = swap_in_override(backbone, config_, device_);
    evaluate_splits(task_.final_splits(), config_, task_, model_, log_, last_step_, device_,
                    &summaries, config_.eval.router_override.name);
    auto layers = backbone->moe_layers();
    for (size_t i = 0; i < layers.size(); ++i) layers[i]->swap_router(trained[i]);
  }

  const RunConfig& config_;
  const TrainConfig& train_;
  Task& task_;
  TaskModel& model_;
  MetricLog& log_;
  torch::Device device_;
  TrainingHooks* hooks_;
  const std::string checkpoint_;
  RoutingProbe probe_;
  TrainingProgress resumed_;  // where this attempt started: step 0 or the checkpoint's
  std::chrono::steady_clock::time_point started_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::vector<MoELayer> moe_layers_;
  double last_loss_ = std::nan("");
  double flops_ = 0.0;   // training FLOPs so far (kTrainingFactor x the forwards' count)
  double tokens_ = 0.0;  // tokens the backbone processed so far
  int64_t last_step_ = 0;  // the last step taken (by this attempt or the one it resumed)
  double decay_start_ = std::nan("");  // see TrainingProgress::decay_start
  bool warned_sinkhorn_ = false;
  BalanceScope balance_scope_ = BalanceScope::MicroBatch;
  Precision precision_ = Precision::Fp32;
};

}  // namespace

MetricValues train_and_evaluate(const RunSpec& run, Task& task, TaskModel& model,
                                MetricLog& log, torch::Device device, bool resume,
                                TrainingHooks* hooks) {
  TrainingLoop loop(run, task, model, log, device, hooks);
  const int64_t first_step = loop.start(resume);
  Progress progress(first_step, loop.fraction_done());
  for (int64_t step = first_step + 1; !loop.finished(); ++step) {
    loop.stop_if_interrupted(step);
    const bool log_step = loop.log_step(step);
    loop.step(step, log_step);
    loop.after_step(step, log_step);
    progress.update(step, loop.position(), loop.fraction_done(), loop.last_loss(), log_step,
                    loop.finished());
  }
  return loop.finish();
}

}  // namespace moelab
