// DOT-MoE token router: top-k of the softmax, unit weights with a straight-through gradient.
#include "routers/dot_moe.h"

#include "routers/losses.h"
#include "routers/topk.h"

namespace moelab {

void DotMoeOptions::check(const RouterShape& shape) const { check_k(k, shape); }

DotMoeRouter::DotMoeRouter(const DotMoeOptions& options, const RouterShape& shape)
    : LogitRouter(shape), options_(options) {
  torch::NoGradGuard no_grad;
  gate_->weight.normal_(0.0, options.init_std);
}

RouteResult DotMoeRouter::decide(const torch::Tensor& logits, const RouteContext& ctx) {
  auto probs = torch::softmax(logits, -1);                    // [T, E]
  auto indices = std::get<1>(torch::topk(probs, options_.k, -1));  // [T, k]
  auto chosen = probs.gather(1, indices);                     // [T, k]
  auto unit = chosen - chosen.detach() + 1.0;                 // 1 forward, dP backward
  RouteResult result = RouteResult::from_topk(indices, unit);
  result.priority = chosen.detach().reshape({-1});            // capacity keeps the likeliest
  result.logits = logits;
  result.probs = probs;
  add_token_choice_losses(result, logits, probs, options_.aux_coef, options_.z_coef, ctx);
  return result;
}

}  // namespace moelab
