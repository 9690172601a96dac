// S-BASE: Sinkhorn-balanced expert indices, ordinary activations as gates.
#include "routers/sbase.h"

#include "routers/sinkhorn.h"
#include "routers/topk.h"

namespace moelab {

void SbaseOptions::check(const RouterShape& shape) const { check_k(k, shape); }

SbaseRouter::SbaseRouter(const SbaseOptions& options, const RouterShape& shape)
    : LogitRouter(shape), options_(options) {}

RouteResult SbaseRouter::decide(const torch::Tensor& logits, const RouteContext& ctx) {
  auto activation = options_.k == 1 ? torch::sigmoid(logits) : torch::softmax(logits, -1);  // [T,E]
  torch::Tensor indices;  // [T, k]
  RouteResult result;
  if (ctx.training) {
    SinkhornResult plan = sinkhorn_balanced(  // balanced over the real tokens
        real_rows(logits, ctx), SinkhornOptions{options_.max_iters, options_.tol, options_.check_every});
    indices = std::get<1>(torch::topk(logits.detach() + plan.g.unsqueeze(0), options_.k, -1));
    const auto solve = sinkhorn_metrics(plan);
    result.metrics.insert(result.metrics.end(), solve.begin(), solve.end());
    result.solver_flops = sinkhorn_flops(plan);
  } else {
    indices = std::get<1>(torch::topk(activation, options_.k, -1));
  }
  RouteResult chosen = RouteResult::from_topk(indices, activation.gather(1, indices));
  chosen.metrics = std::move(result.metrics);
  chosen.solver_flops = result.solver_flops;
  chosen.logits = logits;
  chosen.probs = torch::softmax(logits, -1);
  return chosen;
}

}  // namespace moelab
