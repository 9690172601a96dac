// Soft MoE dispatch and combine weights.
#include "routers/soft_moe.h"

#include <cmath>

#include "harness/core/error.h"

namespace moelab {

SoftMoeRouter::SoftMoeRouter(const SoftMoeOptions& options, const RouterShape& shape)
    : options_(options) {
  slot_params_ = register_parameter(
      "slot_params", torch::randn({shape.dim, shape.experts * options.slots}) / std::sqrt(shape.dim));
}

RouteResult SoftMoeRouter::route(const torch::Tensor& x, const RouteContext& ctx) {
  if (ctx.causal) {
    throw Error("soft_moe mixes all tokens of a sequence and cannot be used in a causal model");
  }
  auto groups = routing_groups(x.size(0), ctx, "sequence").to(x.device());  // [G, Tg]
  auto grouped = x.to(torch::kFloat).index_select(0, groups.reshape({-1}))
                     .view({groups.size(0), groups.size(1), x.size(1)});   // [G, Tg, D]
  auto logits = torch::matmul(grouped, slot_params_);                       // [G, Tg, E*S]
  auto real = real_token_column(x.size(0), ctx, logits.options())
                  .index_select(0, groups.reshape({-1}))
                  .view({groups.size(0), groups.size(1), 1});               // [G, Tg, 1]
  RouteResult result;
  result.soft_tokens = groups;
  result.soft_dispatch = torch::softmax(logits.masked_fill(real == 0, -1e9), 1);  // over real tokens
  result.soft_combine = torch::softmax(logits, 2);   // over slots
  return result;
}

}  // namespace moelab
