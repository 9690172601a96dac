// Low-dimensional routing against normalised expert embeddings.
#include "routers/xmoe.h"

#include "routers/losses.h"
#include "routers/topk.h"

namespace moelab {

void XmoeOptions::check(const RouterShape& shape) const { check_k(k, shape); }

XmoeRouter::XmoeRouter(const XmoeOptions& options, const RouterShape& shape) : options_(options) {
  projection_ = register_module("projection", torch::nn::Linear(torch::nn::LinearOptions(
                                                  shape.dim, options.routing_dim).bias(false)));
  auto embeddings = torch::empty({shape.experts, options.routing_dim});
  torch::nn::init::orthogonal_(embeddings, 0.32);
  expert_embeddings_ = register_parameter("expert_embeddings", embeddings);
}

RouteResult XmoeRouter::route(const torch::Tensor& x, const RouteContext& ctx) {
  if (ctx.training) {  // an evaluation forward changes no parameter
    torch::NoGradGuard no_grad;
    expert_embeddings_.mul_(options_.embedding_norm /
                            expert_embeddings_.norm(2, -1, true).clamp_min(1e-6));
  }
  auto unit = torch::nn::functional::normalize(
      expert_embeddings_, torch::nn::functional::NormalizeFuncOptions().dim(-1));  // [E, d_e]
  auto logits = torch::matmul(projection_(x.to(torch::kFloat)), unit.t());      // [T, E]
  auto [indices, gates] = softmax_topk(logits, options_.k, "after", true);
  RouteResult result = RouteResult::from_topk(indices, gates);
  result.logits = logits;
  result.probs = torch::softmax(logits, -1);
  auto balance_probs = torch::softmax(logits / options_.balance_temperature, -1);
  add_token_choice_losses(result, logits, balance_probs, options_.aux_coef, options_.z_coef, ctx);
  return result;
}

}  // namespace moelab
