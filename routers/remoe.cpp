// ReLU routing with an adaptive L1 penalty.
#include "routers/remoe.h"

#include <cmath>

#include "routers/losses.h"
#include "routers/topk.h"

namespace moelab {

void RemoeOptions::check(const RouterShape& shape) const { check_k(k, shape); }

RemoeRouter::RemoeRouter(const RemoeOptions& options, const RouterShape& shape)
    : LogitRouter(shape), options_(options), experts_(shape.experts) {
  l1_coef_ = register_buffer("l1_coef", torch::full({}, options.lambda_init, torch::kDouble));
  step_active_ = register_buffer("step_active", torch::zeros({2}, torch::kDouble));
}

RouteResult RemoeRouter::decide(const torch::Tensor& logits, const RouteContext& ctx) {
  auto gates = torch::relu(logits);                                             // [T, E]
  auto real = real_token_column(logits.size(0), ctx, logits.options());         // [T, 1]
  auto active = (gates.detach() > 0).to(logits.dtype()) * real;                 // [T, E]
  auto pairs = active.nonzero();                                                // [A, 2]
  RouteResult result = RouteResult::from_pairs(pairs.select(1, 0), pairs.select(1, 1), gates);
  result.logits = logits;
  const auto real_tokens = real.sum().clamp_min(1.0);
  auto weights = torch::ones({experts_}, logits.options());                     // [E]
  if (options_.balance) {
    weights = active.sum(0) * (static_cast<double>(experts_) / options_.k) / real_tokens;
  }
  auto l1 = (gates * real * weights).sum() / real_tokens;
  result.aux_losses.emplace_back("l1", l1 * l1_coef_.to(l1.options()));
  if (ctx.training) {
    torch::NoGradGuard no_grad;
    step_active_ += torch::stack({active.sum(), real.sum()}).to(step_active_.options());
  }
  result.metrics.emplace_back("k_mean", (active.sum() / real_tokens).detach());
  result.metrics.emplace_back("l1_coef", l1_coef_.to(logits.options()).detach());
  return result;
}

void RemoeRouter::on_step_end(int64_t /*step*/) {
  torch::NoGradGuard no_grad;
  const double active = step_active_[0].item<double>(), tokens = step_active_[1].item<double>();
  step_active_.zero_();
  if (tokens == 0) return;
  const double sparsity = 1.0 - active / (tokens * static_cast<double>(experts_));
  const double target = 1.0 - static_cast<double>(options_.k) / static_cast<double>(experts_);
  if (sparsity < target) l1_coef_ *= options_.alpha;
  if (sparsity > target) l1_coef_ /= options_.alpha;
}

}  // namespace moelab
