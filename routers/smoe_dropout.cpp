// Frozen random router with a growing k.
#include "routers/smoe_dropout.h"

#include <cmath>

#include "routers/topk.h"

namespace moelab {

void SmoeDropoutOptions::check(const RouterShape& shape) const {
  check_k(static_cast<double>(k_start), shape, "router.k_start");
  check_k(static_cast<double>(k_end), shape, "router.k_end");
  check_k(static_cast<double>(eval_k), shape, "router.eval_k");
}

SmoeDropoutRouter::SmoeDropoutRouter(const SmoeDropoutOptions& options, const RouterShape& shape)
    : LogitRouter(shape),
      k_start_(options.k_start > 0 ? options.k_start : std::max<int64_t>(1, shape.experts / 2)),
      k_end_(options.k_end > 0 ? options.k_end : shape.experts),
      eval_k_(options.eval_k > 0 ? options.eval_k : k_end_),
      ramp_steps_(options.ramp_steps) {
  gate_->weight.set_requires_grad(false);  // the router is random and stays so
}

int64_t SmoeDropoutRouter::k_at(const RouteContext& ctx) const {
  if (!ctx.training) return eval_k_;
  const double progress = std::min(1.0, static_cast<double>(ctx.step) / ramp_steps_);
  return k_start_ + std::llround(progress * static_cast<double>(k_end_ - k_start_));
}

RouteResult SmoeDropoutRouter::decide(const torch::Tensor& logits, const RouteContext& ctx) {
  const int64_t k = k_at(ctx);
  auto [indices, gates] = softmax_topk(logits, k, "after", true);
  RouteResult result = RouteResult::from_topk(indices, gates);
  result.logits = logits;
  result.probs = torch::softmax(logits, -1);
  result.metrics.emplace_back("k_active", torch::full({}, static_cast<double>(k)));
  return result;
}

}  // namespace moelab
