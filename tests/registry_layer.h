// What the contract tests over the router registry run: a MoE layer of width 16 with the
// default model.moe settings and the given overrides (router.name=...), and a routing context
// for 64 tokens in groups of 16 (seed 3, step 1; token ids for the hash router).
#pragma once

#include <string>
#include <vector>

#include "harness/config/config.h"
#include "harness/model/moe_layer.h"
#include "routers/registry.h"

namespace moelab::testing {

inline constexpr int64_t kLayerDim = 16;

inline MoELayer registry_layer(const std::vector<std::string>& overrides) {
  const RunConfig config = parse_run_config("", "defaults.yaml", overrides);
  RouterShape shape = router_shape(config.model, 3, 0);
  shape.dim = kLayerDim;
  return MoELayer(kLayerDim, config.model.moe, make_router(config.router, shape));
}

// Draws the token ids from the default generator.
inline RouteContext context_for_64_tokens(bool training) {
  RouteContext ctx;
  ctx.training = training;
  ctx.step = 1;
  ctx.seed = 3;
  ctx.group_size = 16;
  ctx.token_ids = torch::randint(0, 1000, {64}, torch::kLong);
  return ctx;
}

}  // namespace moelab::testing
