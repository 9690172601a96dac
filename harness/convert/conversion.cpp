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

Reconstruction reconstruction_error(MoELayer layer, const torch::Tensor& split,
                                    torch::nn::Sequential dense, const torch::Tensor& x, int64_t k,
                                    int64_t layer_index) {
  torch::NoGradGuard no_grad;
  auto target = dense->forward(x);                                  // [N, D]
  const double energy = target.pow(2).sum().item<double>();
  RouteContext ctx;
  ctx.layer = layer_index;
  auto routed = layer->forward(x, ctx);                             // [N, D]
  auto outputs = all_expert_outputs(*layer, x, split);              // [E, N, D]
  auto best = std::get<1>(outputs.pow(2).sum(-1).topk(k, 0));       // [k, N]
  auto oracle = outputs.gather(0, best.unsqueeze(-1).expand({k, x.size(0), x.size(1)})).sum(0);
  return {(routed - target).pow(2).sum().item<double>() / energy,
          (oracle - target).pow(2).sum().item<double>() / energy};
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
    : config_(run.config), parent_run_id_(parent.run_id), store_(store), run_id_(run.run_id),
      device_(device) {
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

void Conversion::convert(TaskModel& model) {
  torch::NoGradGuard no_grad;
  auto blocks = model.backbone()->blocks();
  for (size_t i = 0; i < blocks.size(); ++i) {
    MoELayer layer = blocks[i]->moe();
    if (layer.is_empty()) continue;
    auto dense = parent_ffn(*teacher_, i);
    auto first = dense->ptr<torch::nn::LinearImpl>(0), second = dense->ptr<torch::nn::LinearImpl>(2);
    const uint64_t seed = derived_seed({static_cast<uint64_t>(config_.seed), fnv1a("convert"), i});
    const ConvertConfig& convert = config_.convert;
    auto split = [&](const std::string& method) {
      return heuristic_split(method, first->weight, first->bias, calibration_[i],
                             config_.model.moe.experts, convert.kmeans_iters, seed);
    };
    torch::Tensor order;  // dot_moe keeps the dense order: its split lives in the affinities
    if (convert.method == "dot_moe") {
      order = torch::arange(first->weight.size(0), torch::kLong);
      if (convert.affinity_init != "random") {
        forms_[i]->seed_affinity(split(convert.affinity_init).to(device_), convert.tau_end);
      }
    } else {
      order = expert_major_order(split(convert.method));
    }
    load_dense(*layer, first->weight, first->bias, second->weight, second->bias,
               order.to(device_), router_k(layer));
  }
  // Everything outside the converted FFNs (embeddings, attention, norms, heads, dense FFNs of
  // blocks left dense) is the parent's.
  auto source = teacher_->named_parameters();
  for (auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& parameter = item.value();
    if (name.find(".moe.") != std::string::npos) continue;
    const torch::Tensor* from = source.find(name);
    if (from == nullptr || !from->sizes().equals(parameter.sizes())) {
      throw Error(fmt::format("dense parent run {} has no parameter '{}' of shape {}",
                              parent_run_id_, name, parameter.sizes()));
    }
    parameter.copy_(*from);
  }
}

MetricValues Conversion::measure(TaskModel& model, const std::string& prefix, bool with_routed) {
  const bool was_training = model.is_training();
  model.eval();
  auto blocks = model.backbone()->blocks();
  MetricValues values;
  double routed = 0.0, oracle = 0.0;
  int64_t layers = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    MoELayer layer = blocks[i]->moe();
    if (layer.is_empty()) continue;
    const auto split = forms_.empty() ? contiguous_split(*layer) : forms_[i]->split();
    const auto error = reconstruction_error(layer, split, parent_ffn(*teacher_, i),
                                            calibration_[i], router_k(layer),
                                            static_cast<int64_t>(i));
    const std::string name = fmt::format("{}l{}/", prefix, i);
    values.emplace_back(name + "recon_err_oracle", error.oracle);
    if (with_routed) values.emplace_back(name + "recon_err", error.routed);
    routed += error.routed;
    oracle += error.oracle;
    ++layers;
  }
  values.emplace_back(prefix + "recon_err_oracle", oracle / layers);
  if (with_routed) values.emplace_back(prefix + "recon_err", routed / layers);
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
  install_forms(model);
  if (resuming) {  // converted when the run started; its measurements are in the database
    for (const auto& [name, value] : store_.metrics_at(run_id_, "convert", 0)) {
      at_conversion_.emplace_back("convert/" + name, value);
    }
    return;
  }
  const auto start = std::chrono::steady_clock::now();
  convert(model);
  MetricValues measured = measure(model, "", false);
  const double oracle_error = measured.back().second;  // the mean over layers comes last
  measured.emplace_back("seconds", std::chrono::duration<double>(
                                       std::chrono::steady_clock::now() - start).count());
  for (const auto& [name, value] : measured) {
    log.add(0, "convert", name, value);
    at_conversion_.emplace_back("convert/" + name, value);
  }
  log.flush();
  fmt::print(stderr, "converted by {} from dense run {}: oracle reconstruction error {:.4f}\n",
             config_.convert.method, parent_run_id_, oracle_error);
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
  for (size_t i = 0; i < blocks.size(); ++i) {
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
  const double experts = static_cast<double>(config_.model.moe.experts);
  double active = count(model), ffn_fraction = 0.0;
  for (const auto& layer : model.backbone()->moe_layers()) {
    ffn_fraction = static_cast<double>(router_k(layer)) / experts;
    active -= static_cast<double>(layer->expert_parameter_count()) * (1.0 - ffn_fraction);
  }
  values.emplace_back("export/active_param_fraction", active / count(*teacher_));
  values.emplace_back("export/ffn_active_fraction", ffn_fraction);

  const auto parent = store_.summaries(parent_run_id_);
  const MetricValues kept = retention(task_metrics(config_.task.name),
                                      {parent.begin(), parent.end()}, finals);
  values.insert(values.end(), kept.begin(), kept.end());
  return values;
}

}  // namespace moelab
