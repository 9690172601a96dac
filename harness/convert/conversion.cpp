// Dense -> MoE conversion: neuron splits, distillation, export, metrics.
#include "harness/convert/conversion.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include "harness/train/checkpoint.h"
#include "harness/convert/masked_dense.h"
#include "harness/convert/neuron_split.h"
#include "harness/convert/pruning.h"
#include "harness/convert/upcycling.h"
#include "harness/train/provenance.h"
#include "harness/core/rng.h"
#include "routers/dot_moe.h"
#include "tasks/registry.h"

namespace moelab {
namespace {

int64_t router_k(MoELayer layer) {
  auto* router = dynamic_cast<DotMoeRouter*>(&layer->router());
  MOELAB_CHECK(router != nullptr, "a converted layer routes with dot_moe");
  return router->k();
}

torch::nn::Sequential parent_ffn(TaskModel& teacher, size_t block) {
  auto dense = teacher.backbone()->blocks().at(block)->dense_ffn();
  MOELAB_CHECK(!dense.is_empty(), "the dense parent's block {} has no dense FFN", block);
  return dense;
}

// A dense FFN's weights in torch Linear layout: w1 [H, D], b1 [H], w2 [D, H], b2 [D].
struct FfnWeights {
  torch::Tensor w1, b1, w2, b2;
};
FfnWeights ffn_weights(torch::nn::Sequential ffn) {
  auto first = ffn->ptr<torch::nn::LinearImpl>(0), second = ffn->ptr<torch::nn::LinearImpl>(2);
  return {first->weight, first->bias, second->weight, second->bias};
}

double relative_error(const torch::Tensor& output, const torch::Tensor& target) {
  return (output - target).pow(2).sum().item<double>() / target.pow(2).sum().item<double>();
}

// Whether parameter `name` belongs to the FFN of one of `blocks` (its MoE layer or dense FFN).
bool in_converted_ffn(const std::string& name, const std::vector<int64_t>& blocks) {
  for (int64_t block : blocks) {
    const std::string prefix = fmt::format(".block{}.", block);
    if (name.find(prefix + "moe.") != std::string::npos ||
        name.find(prefix + "ffn.") != std::string::npos) {
      return true;
    }
  }
  return false;
}

}  // namespace

torch::Tensor heuristic_split(const std::string& method, const torch::Tensor& w1,
                              const torch::Tensor& b1, const torch::Tensor& inputs,
                              int64_t experts, int64_t kmeans_iters, uint64_t seed) {
  torch::NoGradGuard no_grad;
  const int64_t neurons = w1.size(0);
  torch::Tensor assignment;
  if (method == "random") {
    assignment = random_split(neurons, experts, seed);
  } else if (method == "weight_cluster") {  // MoEfication: rows of the input weights, normalised
    auto rows = w1.to(torch::kCPU, torch::kFloat);                               // [H, D]
    assignment = balanced_kmeans(rows / rows.norm(2, 1, true).clamp_min(1e-12), experts,
                                 kmeans_iters, seed);
  } else if (method == "activation_cluster") {  // co-activation profiles over the calibration
    auto hidden = torch::gelu(torch::addmm(b1, inputs.to(w1.device()), w1.t()));  // [N, H]
    assignment = balanced_kmeans(hidden.t(), experts, kmeans_iters, seed);        // [H, N] rows
  } else {
    throw Error(fmt::format("'{}' is not a heuristic split method", method));
  }
  check_balanced(assignment, experts, "convert." + method);
  return assignment;
}

double oracle_reconstruction_error(MoELayer layer, const torch::Tensor& split,
                                   torch::nn::Sequential dense, const torch::Tensor& x, int64_t k) {
  torch::NoGradGuard no_grad;
  auto outputs = all_expert_outputs(*layer, x, split);              // [E, N, D]
  auto best = std::get<1>(outputs.pow(2).sum(-1).topk(k, 0));       // [k, N]
  auto oracle = outputs.gather(0, best.unsqueeze(-1).expand({k, x.size(0), x.size(1)})).sum(0);
  return relative_error(oracle, dense->forward(x));
}

MetricValues retention(const TaskMetrics& metrics, const std::map<std::string, double>& dense,
                       const MetricValues& converted) {
  MetricValues values;
  for (const auto& [key, moe_value] : converted) {
    const auto slash = key.find('/');
    if (slash == std::string::npos) continue;
    const std::string split = key.substr(0, slash), metric = key.substr(slash + 1);
    const bool main_split = split == "val" || split == "test";
    const bool suite_mean = metric == "mean_error" && split.find(':') == std::string::npos;
    auto found = dense.find(key);
    if ((!main_split && !suite_mean) || found == dense.end()) continue;
    values.emplace_back("retention/" + key, metrics.higher_is_better(metric_of(key))
                                                ? moe_value / found->second
                                                : found->second / moe_value);
  }
  return values;
}

Conversion::Conversion(const RunSpec& run, const RunSpec& parent, Task& task, Store& store,
                       torch::Device device)
    : config_(run.config), kind_(conversion_kind(run.config.convert.method)),
      blocks_(moe_layer_indices(run.config.model)), parent_run_id_(parent.run_id), store_(store),
      run_id_(run.run_id), device_(device) {
  const RunConfig& config = run.config;
  store_.set_parent(run_id_, parent_run_id_);
  teacher_ = task.build_model(parent.config);
  load_model_weights(parent.checkpoint, *teacher_);
  teacher_->to(device_);
  teacher_->eval();
  for (auto& parameter : teacher_->parameters()) parameter.requires_grad_(false);

  // Calibration: the parent's FFN inputs on the first training batches.
  torch::NoGradGuard no_grad;
  auto blocks = teacher_->backbone()->blocks();
  std::vector<std::vector<torch::Tensor>> sinks(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) blocks[i]->capture_ffn_inputs(&sinks[i]);
  int64_t tokens = 0;
  for (int64_t step = 0; tokens < config.convert.calibration_tokens && step < 256; ++step) {
    Batch batch = task.train_batch(step, config.train.batch_size);
    batch.input = batch.input.to(device_);
    teacher_->predict(batch, RouteContext{});
    tokens += sinks[0].back().size(0);
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    blocks[i]->capture_ffn_inputs(nullptr);
    auto all = torch::cat(sinks[i]);
    calibration_.push_back(all.narrow(0, 0, std::min(all.size(0), config.convert.calibration_tokens)));
  }
}

void Conversion::split_layer(MoELayer layer, size_t block) {
  const FfnWeights dense = ffn_weights(parent_ffn(*teacher_, block));
  const uint64_t seed = derived_seed({static_cast<uint64_t>(config_.seed), fnv1a("convert"), block});
  const ConvertConfig& convert = config_.convert;
  auto split = [&](const std::string& method) {
    return heuristic_split(method, dense.w1, dense.b1, calibration_[block],
                           config_.model.moe.experts, convert.kmeans_iters, seed);
  };
  torch::Tensor order;  // dot_moe keeps the dense order: its split lives in the affinities
  if (convert.method == "dot_moe") {
    order = torch::arange(dense.w1.size(0), torch::kLong);
    if (convert.affinity_init != "random") {
      forms_[block]->seed_affinity(split(convert.affinity_init).to(device_), convert.tau_end);
    }
  } else {
    order = expert_major_order(split(convert.method));
  }
  load_dense(*layer, dense.w1, dense.b1, dense.w2, dense.b2, order.to(device_), router_k(layer));
}

void Conversion::upcycle_layer(MoELayer layer, size_t block) {
  const FfnWeights dense = ffn_weights(parent_ffn(*teacher_, block));
  const int64_t granularity = upcycling_granularity(*layer, dense.w1.size(0));
  tie_router_groups(*layer, granularity);
  const double gate_sum = route_averages(*layer, calibration_[block]).gate_sum;
  load_upcycled(*layer, dense.w1, dense.b1, dense.w2, dense.b2, granularity, gate_sum);
  if (config_.convert.method == "drop_upcycling") {
    drop_reinitialise(*layer, config_.convert.drop_ratio,
                      derived_seed({static_cast<uint64_t>(config_.seed), fnv1a("drop_upcycling"),
                                    block}));
  }
}

void Conversion::convert(TaskModel& model) {
  torch::NoGradGuard no_grad;
  auto blocks = model.backbone()->blocks();
  for (int64_t index : blocks_) {
    const auto block = static_cast<size_t>(index);
    if (kind_ == ConversionKind::Split) split_layer(blocks[block]->moe(), block);
    if (kind_ == ConversionKind::Upcycle) upcycle_layer(blocks[block]->moe(), block);
    if (kind_ == ConversionKind::Prune) {
      const FfnWeights dense = ffn_weights(parent_ffn(*teacher_, block));
      const auto kept = kept_neurons(
          neuron_importance(dense.w1, dense.b1, dense.w2, calibration_[block]),
          pruned_ffn_hidden(config_));
      load_pruned(blocks[block]->dense_ffn(), dense.w1, dense.b1, dense.w2, dense.b2, kept);
    }
  }
  // Everything outside the converted FFNs (embeddings, attention, norms, heads, dense FFNs of
  // blocks left dense) is the parent's.
  auto source = teacher_->named_parameters();
  for (auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& parameter = item.value();
    if (in_converted_ffn(name, blocks_)) continue;
    const torch::Tensor* from = source.find(name);
    if (from == nullptr || !from->sizes().equals(parameter.sizes())) {
      throw Error(fmt::format("dense parent run {} has no parameter '{}' of shape {}",
                              parent_run_id_, name, parameter.sizes()));
    }
    parameter.copy_(*from);
  }
}

torch::Tensor Conversion::converted_output(TaskModel& model, size_t block) {
  torch::NoGradGuard no_grad;
  auto converted = model.backbone()->blocks().at(block);
  const auto& x = calibration_[block];
  if (kind_ == ConversionKind::Prune) return converted->dense_ffn()->forward(x);
  RouteContext ctx;
  ctx.layer = static_cast<int64_t>(block);
  return converted->moe()->forward(x, ctx);
}

MetricValues Conversion::measure(TaskModel& model, const std::string& prefix, bool with_routed) {
  const bool was_training = model.is_training();
  model.eval();
  const bool oracle = kind_ == ConversionKind::Split;
  MetricValues values;
  double routed_sum = 0.0, oracle_sum = 0.0;
  for (int64_t index : blocks_) {
    const auto block = static_cast<size_t>(index);
    const std::string name = fmt::format("{}l{}/", prefix, block);
    if (oracle) {
      MoELayer layer = model.backbone()->blocks().at(block)->moe();
      const auto split = forms_.empty() ? contiguous_split(*layer) : forms_[block]->split();
      const double error = oracle_reconstruction_error(layer, split, parent_ffn(*teacher_, block),
                                                       calibration_[block], router_k(layer));
      values.emplace_back(name + "recon_err_oracle", error);
      oracle_sum += error;
    }
    if (with_routed) {
      const double error = relative_error(converted_output(model, block),
                                          parent_ffn(*teacher_, block)->forward(calibration_[block]));
      values.emplace_back(name + "recon_err", error);
      routed_sum += error;
    }
  }
  const auto layers = static_cast<double>(blocks_.size());
  if (oracle) values.emplace_back(prefix + "recon_err_oracle", oracle_sum / layers);
  if (with_routed) values.emplace_back(prefix + "recon_err", routed_sum / layers);
  model.train(was_training);
  return values;
}

void Conversion::install_forms(TaskModel& model) {
  // The affinities' own stream: the same draws whether the run starts or resumes.
  torch::manual_seed(derived_seed({static_cast<uint64_t>(config_.seed), fnv1a("affinity")}));
  const MaskedDenseOptions options = MaskedDenseOptions::from(config_);
  auto blocks = model.backbone()->blocks();
  forms_.assign(blocks.size(), nullptr);
  for (size_t i = 0; i < blocks.size(); ++i) {
    MoELayer layer = blocks[i]->moe();
    if (!layer.is_empty()) forms_[i] = install_masked_dense(*layer, options);
  }
}

void Conversion::before_training(TaskModel& model, MetricLog& log, bool resuming) {
  if (kind_ == ConversionKind::Split) install_forms(model);
  if (resuming) {  // converted when the run started; its measurements are in the database
    for (const auto& [name, value] : store_.metrics_at(run_id_, "convert", 0)) {
      at_conversion_.emplace_back("convert/" + name, value);
    }
    return;
  }
  const auto start = std::chrono::steady_clock::now();
  convert(model);
  // Split layers before any training: their oracle error (the router is new); upcycled and
  // pruned ones: their error as they are.
  MetricValues measured = measure(model, "", kind_ != ConversionKind::Split);
  const auto [error_name, error] = measured.back();  // the mean over layers comes last
  measured.emplace_back("seconds", std::chrono::duration<double>(
                                       std::chrono::steady_clock::now() - start).count());
  for (const auto& [name, value] : measured) {
    log.add(0, "convert", name, value);
    at_conversion_.emplace_back("convert/" + name, value);
  }
  log.flush();
  fmt::print(stderr, "converted by {} from dense run {}: convert/{} {:.4g}\n",
             config_.convert.method, parent_run_id_, error_name, error);
}

std::vector<NamedTensor> Conversion::extra_losses(const Batch& batch, const torch::Tensor& logits) {
  if (config_.convert.kl_coef == 0) return {};
  torch::Tensor teacher_logits;
  {
    torch::NoGradGuard no_grad;
    teacher_logits = teacher_->predict(batch, RouteContext{}).to(torch::kFloat);  // [N, C]
  }
  auto log_p = torch::log_softmax(teacher_logits, -1);                  // teacher
  auto log_q = torch::log_softmax(logits.to(torch::kFloat), -1);         // student
  auto kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean();
  return {{"kl", kl * config_.convert.kl_coef}};
}

void Conversion::after_training(TaskModel& model) {
  auto blocks = model.backbone()->blocks();
  for (size_t i = 0; i < forms_.size(); ++i) {
    if (forms_[i].is_empty()) continue;
    check_balanced(forms_[i]->split(), config_.model.moe.experts,
                   fmt::format("block {}'s split at export", i));
    export_split(*blocks[i]->moe(), *forms_[i]);
  }
  forms_.clear();
}

MetricValues Conversion::summaries(TaskModel& model, const MetricValues& finals) {
  MetricValues values = at_conversion_;
  const MetricValues exported = measure(model, "export/", true);
  values.insert(values.end(), exported.begin(), exported.end());

  // Active parameters per token: the exported model (the forms and their affinities are gone)
  // without the experts a token skips.
  auto count = [](torch::nn::Module& module) {
    double total = 0.0;
    for (const auto& parameter : module.parameters()) total += static_cast<double>(parameter.numel());
    return total;
  };
  // ffn_active_fraction: the FFN neurons a token uses over the dense FFN's, mean over layers.
  const double experts = static_cast<double>(config_.model.moe.experts);
  const auto dense_hidden = static_cast<double>(config_.model.ffn_hidden);
  double active = count(model), ffn_fraction = 0.0;
  for (int64_t index : blocks_) {
    const auto block = static_cast<size_t>(index);
    if (kind_ == ConversionKind::Prune) {
      ffn_fraction += static_cast<double>(pruned_ffn_hidden(config_)) / dense_hidden;
      continue;
    }
    MoELayer layer = model.backbone()->blocks().at(block)->moe();
    const double per_token = route_averages(*layer, calibration_[block]).experts_per_token;
    active -= static_cast<double>(layer->expert_parameter_count()) * (1.0 - per_token / experts);
    ffn_fraction += per_token * static_cast<double>(layer->config().expert_hidden) / dense_hidden;
  }
  values.emplace_back("export/active_param_fraction", active / count(*teacher_));
  values.emplace_back("export/ffn_active_fraction", ffn_fraction / static_cast<double>(blocks_.size()));

  const auto parent = store_.summaries(parent_run_id_);
  const MetricValues kept = retention(task_metrics(config_.task.name),
                                      {parent.begin(), parent.end()}, finals);
  values.insert(values.end(), kept.begin(), kept.end());
  return values;
}

}  // namespace moelab
