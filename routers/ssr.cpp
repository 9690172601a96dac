// Selective Sinkhorn Routing.
#include "routers/ssr.h"

#include "routers/losses.h"
#include "routers/topk.h"

namespace moelab {

void SsrOptions::check(const RouterShape& shape) const { check_k(k, shape); }

bool ssr_draw(const SsrOptions& options, const RouteContext& ctx) {
  if (!ctx.training || options.p <= 0) return false;
  const int64_t salt = options.draw == "layer" ? ctx.layer + 1 : 0;
  return derived_uniform(ctx.seed, ctx.step, salt) < options.p;
}

SsrRouter::SsrRouter(const SsrOptions& options, const RouterShape& shape)
    : LogitRouter(shape), options_(options) {}

RouteResult SsrRouter::decide(const torch::Tensor& logits, const RouteContext& ctx) {
  auto noisy = ctx.training && options_.noise > 0
                   ? logits + options_.noise * routing_noise_like(logits, ctx)
                   : logits;  // [T, E]
  const bool use_sinkhorn = ssr_draw(options_, ctx);
  RouteResult result;
  if (use_sinkhorn) {
    result = sinkhorn_branch(noisy, ctx);
  } else {
    auto [indices, gates] = softmax_topk(noisy, options_.k, "after", true);
    result = RouteResult::from_topk(indices, gates);
  }
  result.logits = logits;
  result.probs = torch::softmax(logits, -1);
  result.metrics.emplace_back("ssr_sinkhorn_step", torch::full({}, use_sinkhorn ? 1.0 : 0.0));
  add_token_choice_losses(result, logits, result.probs, options_.aux_coef, options_.z_coef, ctx);
  return result;
}

RouteResult SsrRouter::sinkhorn_branch(const torch::Tensor& logits, const RouteContext& ctx) {
  auto cost = options_.cost == "softmax" ? torch::softmax(logits, -1) : logits;  // C [T, E]
  auto log_kernel = cost / options_.xi;                                         // [T, E]
  SinkhornResult plan = sinkhorn_balanced(  // balanced over the real tokens
      real_rows(log_kernel, ctx), SinkhornOptions{options_.max_iters, options_.tol, options_.check_every});
  // Rows of the plan are exp(log_kernel + g) up to a per-row constant: same top-k, same
  // renormalised gates.
  auto scores = log_kernel + plan.g.unsqueeze(0);  // [T, E]
  if (options_.grad == "none") scores = scores.detach();
  auto indices = std::get<1>(torch::topk(scores, options_.k, -1));  // [T, k]
  RouteResult result = RouteResult::from_topk(indices, chosen_softmax(scores, indices));
  const auto solve = sinkhorn_metrics(plan);
  result.metrics.insert(result.metrics.end(), solve.begin(), solve.end());
  result.solver_flops = sinkhorn_flops(plan);
  return result;
}

}  // namespace moelab
