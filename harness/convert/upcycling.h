// Upcycling (docs/methods.md): the experts of an MoE layer made from copies of a trained
// dense FFN. copy (sparse upcycling, Komatsuzaki et al. 2023): every expert the whole FFN;
// granular (Megatron-Core's upcycling, He et al. 2024, arXiv 2410.07524): the FFN cut into g
// slices of expert_hidden neurons, expert e a copy of slice e mod g, and the router rows of
// each group of g consecutive experts equal, so that a token takes whole groups;
// Drop-Upcycling (Nakamura et al. 2025, ICLR, arXiv 2502.19261): then a share of each
// expert's neurons re-initialised.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "harness/model/moe_layer.h"

namespace moelab {

// g = dense_hidden / expert_hidden (1: copy).
int64_t upcycling_granularity(const MoELayerImpl& layer, int64_t dense_hidden);

// Gives experts e*g .. e*g+g-1 (one copy of each slice) the router row of expert e*g: their
// logits tie, so a top-k router with k a multiple of g takes whole groups. Needs a router
// with linear logits when g > 1.
void tie_router_groups(MoELayerImpl& layer, int64_t granularity);

// What the layer's router decides for the tokens x [N, D] (in evaluation: ctx.training is
// ignored), averaged over the tokens: the sum of a token's combine weights (1 for normalised
// gates, k for dot_moe's unweighted sum) and its number of experts. Throws for soft routing
// (no per-token weights).
struct RouteAverages {
  double gate_sum = 0.0;
  double experts_per_token = 0.0;
};
RouteAverages route_averages(MoELayerImpl& layer, const torch::Tensor& x,
                             RouteContext ctx = RouteContext{});

// Loads a dense FFN (torch Linear layout: w1 [H, D], b1 [H], w2 [D, H], b2 [D]) into the
// experts: expert e gets neurons (e mod g)*s .. (e mod g)*s + s-1, its output weights times
// g / gate_sum and the output bias b2 / gate_sum. g tied experts chosen together with
// weights summing to gate_sum then give back the dense FFN's output exactly (the scaling of
// Megatron-Core's upcycling, put on the output side so that it is exact for GELU too).
void load_upcycled(MoELayerImpl& layer, const torch::Tensor& w1, const torch::Tensor& b1,
                   const torch::Tensor& w2, const torch::Tensor& b2, int64_t granularity,
                   double gate_sum);

// Drop-Upcycling: in each expert, floor(ratio * s) of its s neurons, drawn without
// replacement (stream (seed, expert)), get new input weights, input bias and output weights,
// each entry drawn from N(mean, std^2) of that tensor over all the experts as loaded.
// Returns the re-initialised neurons [E, floor(ratio * s)] int64.
torch::Tensor drop_reinitialise(MoELayerImpl& layer, double ratio, uint64_t seed);

}  // namespace moelab
