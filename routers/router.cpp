// Shared helpers of the router interface.
#include "routers/router.h"

#include <fmt/format.h>

#include <functional>
#include <map>
#include <set>

#include "harness/core/error.h"
#include "harness/core/rng.h"
#include "routers/losses.h"

namespace moelab {

std::vector<NamedTensor> RoutingRecord::routing_metrics() const {
  // A layer that ran several times (the micro-batches of a step) reports its mean.
  std::vector<std::string> layer_order, name_order;
  std::map<std::string, std::vector<torch::Tensor>> per_layer;
  std::map<std::string, std::vector<torch::Tensor>> per_name;  // the layer means, per name
  for (const auto& [block, metrics] : layer_metrics) {
    for (const auto& [name, value] : metrics) {
      const std::string key = "l" + std::to_string(block) + "/" + name;
      if (per_layer.find(key) == per_layer.end()) layer_order.push_back(key);
      per_layer[key].push_back(value);
    }
  }
  std::vector<NamedTensor> out;
  for (const auto& key : layer_order) {
    auto mean = torch::stack(per_layer[key]).mean();
    out.emplace_back(key, mean);
    const std::string name = key.substr(key.find('/') + 1);
    if (per_name.find(name) == per_name.end()) name_order.push_back(name);
    per_name[name].push_back(mean);
  }
  // Imbalance hides in one layer: besides the mean, its 90th percentile and worst layer.
  static const std::set<std::string> imbalance = {"load_max_over_mean", "load_cv", "overload_factor",
                                                  "dead_experts", "dead_interval", "dropped_frac"};
  for (const auto& name : name_order) {
    if (name.rfind("load_e", 0) == 0) continue;  // per-expert loads only make sense per layer
    auto layers = torch::stack(per_name[name]);  // [L]
    out.emplace_back(name, layers.mean());
    if (imbalance.count(name) == 0) continue;
    out.emplace_back(name + "_p90", torch::quantile(layers.to(torch::kFloat), 0.9));
    out.emplace_back(name + "_max", layers.max());
  }
  return out;
}

RouteResult RouteResult::from_topk(const torch::Tensor& indices, const torch::Tensor& weights) {
  const int64_t tokens = indices.size(0);
  const int64_t k = indices.size(1);
  RouteResult result;
  result.token = torch::arange(tokens, indices.options()).repeat_interleave(k);  // [T*k]
  result.expert = indices.reshape({-1});                                         // [T*k]
  result.weight = weights.reshape({-1});                                         // [T*k]
  result.priority = result.weight.detach();
  return result;
}

RouteResult RouteResult::from_pairs(const torch::Tensor& token, const torch::Tensor& expert,
                                    const torch::Tensor& scores) {
  auto order = std::get<1>(torch::sort(token * scores.size(1) + expert));  // token-major
  RouteResult result;
  result.token = token.index_select(0, order);
  result.expert = expert.index_select(0, order);
  result.weight = scores.index({result.token, result.expert});
  result.priority = result.weight.detach();
  return result;
}

LogitRouter::LogitRouter(const RouterShape& shape) : logit_dtype_(shape.logit_dtype) {
  gate_ = register_module(
      "gate", torch::nn::Linear(torch::nn::LinearOptions(shape.dim, shape.experts).bias(false)));
}

torch::Tensor LogitRouter::logits(const torch::Tensor& x) const {
  return torch::nn::functional::linear(x.to(logit_dtype_), gate_->weight.to(logit_dtype_));
}

RouteResult LogitRouter::route(const torch::Tensor& x, const RouteContext& ctx) {
  return regularised(decide(logits(x), ctx));
}

RouteResult LogitRouter::regularised(RouteResult result) const {
  const double coef = ortho_coef();
  if (coef > 0) result.aux_losses.emplace_back("ortho", coef * orthogonality_loss(gate_->weight));
  return result;
}

torch::Tensor routing_groups(int64_t tokens, const RouteContext& ctx, const std::string& mode) {
  auto options = torch::TensorOptions().dtype(torch::kLong);
  const std::string resolved = mode == "auto" ? (ctx.causal ? "position" : "sequence") : mode;
  const int64_t length = ctx.group_size > 0 ? ctx.group_size : tokens;
  if (resolved == "all") return torch::arange(tokens, options).unsqueeze(0);  // [1, T]
  if (tokens % length != 0) {
    throw Error(fmt::format("{} tokens do not split into groups of {}", tokens, length));
  }
  auto grid = torch::arange(tokens, options).view({tokens / length, length});  // [B, L]
  if (resolved == "sequence") return grid;
  if (resolved == "position") return grid.t().contiguous();  // [L, B]
  throw Error(fmt::format("unknown routing group mode '{}'", mode));
}

torch::Tensor real_token_column(int64_t tokens, const RouteContext& ctx,
                                const torch::TensorOptions& options) {
  if (!ctx.valid.defined()) return torch::ones({tokens, 1}, options);
  return ctx.valid.to(options).reshape({tokens, 1});
}

torch::Tensor real_rows(const torch::Tensor& t, const RouteContext& ctx) {
  if (!ctx.valid.defined()) return t;
  return t.index_select(0, ctx.valid.to(t.device()).nonzero().reshape({-1}));
}

torch::Tensor real_assignments(const torch::Tensor& token, const RouteContext& ctx) {
  if (!ctx.valid.defined()) return torch::ones_like(token, token.options().dtype(torch::kBool));
  return ctx.valid.to(token.device()).index_select(0, token);
}

torch::Tensor real_expert_counts(const RouteResult& result, int64_t experts,
                                 const RouteContext& ctx) {
  auto real = real_assignments(result.token, ctx).to(torch::kFloat);           // [A]
  return torch::zeros({experts}, real.options()).index_add_(0, result.expert, real);  // [E]
}

void ComputeTally::add(const ComputeTally& other) {
  for (const auto& [part, value] : other.flops) add(part, value);
  tokens += other.tokens;
}

double ComputeTally::total() const {
  double sum = 0.0;
  for (const auto& [part, value] : flops) sum += value;
  return sum;
}

double derived_uniform(int64_t seed, int64_t step, int64_t salt) {
  return Rng::keyed({static_cast<uint64_t>(seed), fnv1a("router draw"), static_cast<uint64_t>(step),
                     static_cast<uint64_t>(salt)})
      .uniform();
}

namespace {

// `draw(generator)` with the device's default generator reseeded from (seed, stream, step,
// micro-batch, layer), then restored to its state.
torch::Tensor draw_from_stream(const torch::Tensor& like, const RouteContext& ctx, const std::string& stream,
                               const std::function<torch::Tensor(at::Generator&)>& draw) {
  at::Generator generator = at::globalContext().defaultGenerator(like.device());
  const at::Tensor saved = generator.get_state();
  generator.set_current_seed(derived_seed(
      {static_cast<uint64_t>(ctx.seed), fnv1a(stream), static_cast<uint64_t>(ctx.step),
       static_cast<uint64_t>(ctx.micro_batch), static_cast<uint64_t>(ctx.layer)}));
  auto values = draw(generator);
  generator.set_state(saved);
  return values;
}

}  // namespace

torch::Tensor routing_noise_like(const torch::Tensor& like, const RouteContext& ctx) {
  return draw_from_stream(like, ctx, "routing noise", [&](at::Generator& generator) {
    return at::randn(like.sizes(), generator, like.options());  // [T, E]
  });
}

torch::Tensor routing_uniform_like(const torch::Tensor& like, const RouteContext& ctx,
                                   const std::string& stream) {
  return draw_from_stream(like, ctx, stream, [&](at::Generator& generator) {
    return at::rand(like.sizes(), generator, like.options());
  });
}

}  // namespace moelab
