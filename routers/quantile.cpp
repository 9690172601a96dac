// Quantile balancing: a selection bias set from the step's score quantiles.
#include "routers/quantile.h"

#include "routers/losses.h"
#include "routers/topk.h"

namespace moelab {

void QuantileOptions::check(const RouterShape& shape) const { check_k(k, shape); }

torch::Tensor quantile_bias(const torch::Tensor& scores, const torch::Tensor& bias, int64_t k) {
  const int64_t experts = scores.size(1);
  if (k >= experts) return torch::zeros_like(bias);  // every token takes every expert
  auto cutoff = std::get<0>((scores + bias).topk(k + 1, -1)).select(1, k);       // [N]
  auto excess = scores - cutoff.unsqueeze(1);                                    // [N, E]
  const double fair_share = static_cast<double>(k) / static_cast<double>(experts);  // C / N
  auto target = -torch::quantile(excess, 1.0 - fair_share, /*dim=*/0);           // [E]
  return target - target.mean();  // a shift of every bias changes no selection
}

QuantileRouter::QuantileRouter(const QuantileOptions& options, const RouterShape& shape)
    : LogitRouter(shape), options_(options) {
  bias_ = register_buffer("selection_bias", torch::zeros({shape.experts}));
}

RouteResult QuantileRouter::decide(const torch::Tensor& logits, const RouteContext& ctx) {
  auto scores = options_.score == "softmax" ? torch::softmax(logits, -1)
                                            : torch::sigmoid(logits);            // [T, E]
  auto indices = std::get<1>((scores.detach() + bias_.to(scores.device())).topk(options_.k, -1));
  auto gates = scores.gather(1, indices);                                        // [T, k]
  if (options_.renormalize && options_.k > 1) gates = gates / gates.sum(-1, true);
  RouteResult result = RouteResult::from_topk(indices, gates);
  result.logits = logits;
  result.probs = torch::softmax(logits, -1);
  if (ctx.training) step_scores_.push_back(real_rows(scores.detach(), ctx));
  add_token_choice_losses(result, logits, result.probs, 0.0, options_.z_coef, ctx);
  add_bias_metrics(result, bias_);
  return result;
}

void QuantileRouter::on_step_end(int64_t /*step*/) {
  if (step_scores_.empty()) return;
  torch::NoGradGuard no_grad;
  auto scores = torch::cat(step_scores_).to(bias_.device());                     // [N, E]
  step_scores_.clear();
  if (scores.size(0) == 0) return;
  bias_ += options_.rate * (quantile_bias(scores, bias_, options_.k) - bias_);
}

}  // namespace moelab
