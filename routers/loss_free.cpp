// Auxiliary-loss-free balancing by a selection-only bias.
#include "routers/loss_free.h"

#include "routers/losses.h"
#include "routers/topk.h"

namespace moelab {

void LossFreeOptions::check(const RouterShape& shape) const { check_k(k, shape); }

LossFreeRouter::LossFreeRouter(const LossFreeOptions& options, const RouterShape& shape)
    : LogitRouter(shape), options_(options) {
  bias_ = register_buffer("selection_bias", torch::zeros({shape.experts}));
  step_counts_ = register_buffer("step_counts", torch::zeros({shape.experts}));
}

RouteResult LossFreeRouter::decide(const torch::Tensor& logits, const RouteContext& ctx) {
  auto scores = options_.score == "softmax" ? torch::softmax(logits, -1)
                                            : torch::sigmoid(logits);  // [T, E]
  auto indices = std::get<1>(torch::topk(scores.detach() + bias_.to(scores.device()),
                                         options_.k, -1));             // [T, k]
  auto gates = scores.gather(1, indices);                              // [T, k] unbiased
  // One renormalised gate would be the constant 1 (no gradient to the router): k > 1 only.
  if (options_.renormalize && options_.k > 1) gates = gates / gates.sum(-1, true);
  RouteResult result = RouteResult::from_topk(indices, gates);
  result.logits = logits;
  result.probs = torch::softmax(logits, -1);
  count_assignments(step_counts_, result, ctx);
  add_token_choice_losses(result, logits, result.probs, options_.aux_coef, options_.z_coef, ctx);
  add_bias_metrics(result, bias_, indices,
                   [&] { return std::get<1>(torch::topk(scores.detach(), options_.k, -1)); }, ctx);
  return result;
}

void LossFreeRouter::on_step_end(int64_t /*step*/) {
  move_selection_bias(bias_, step_counts_, options_.rate);
}

}  // namespace moelab
