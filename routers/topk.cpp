// Softmax top-k token-choice router.
#include "routers/topk.h"

#include "routers/losses.h"

namespace moelab {

void TopKOptions::check(const ModelConfig& model) const {
  if (k > model.moe.experts) {
    throw ConfigError(fmt::format("router.k = {}: must be <= model.moe.experts = {}", k,
                                  model.moe.experts));
  }
}

TopKRouter::TopKRouter(const TopKOptions& options, const RouterShape& shape)
    : options_(options) {
  gate_ = register_module(
      "gate", torch::nn::Linear(torch::nn::LinearOptions(shape.dim, shape.experts).bias(false)));
}

RouteResult TopKRouter::route(const torch::Tensor& x, const RouteContext& /*ctx*/) {
  auto logits = gate_(x.to(torch::kFloat));  // [T, E], router in fp32
  auto probs = torch::softmax(logits, -1);   // [T, E]
  torch::Tensor indices, gates;              // [T, k]
  if (options_.softmax == "after") {
    auto [top_logits, top_indices] = torch::topk(logits, options_.k, -1);
    indices = top_indices;
    gates = torch::softmax(top_logits, -1);
  } else {
    auto [top_probs, top_indices] = torch::topk(probs, options_.k, -1);
    indices = top_indices;
    gates = options_.renormalize ? top_probs / top_probs.sum(-1, true) : top_probs;
  }
  RouteResult result = RouteResult::from_topk(indices, gates);
  result.logits = logits;
  result.probs = probs;
  if (options_.aux_coef > 0) {
    result.aux_losses.emplace_back("balance",
                                   options_.aux_coef * switch_balance_loss(probs, result.expert));
  }
  if (options_.z_coef > 0) {
    result.aux_losses.emplace_back("z", options_.z_coef * router_z_loss(logits));
  }
  return result;
}

}  // namespace moelab
