// Upcycling: experts from copies of a dense FFN (copy, granular) and Drop-Upcycling.
#include "harness/convert/upcycling.h"

#include <fmt/format.h>

#include <cmath>
#include <vector>

#include "harness/core/error.h"
#include "harness/core/rng.h"
#include "harness/core/sampler.h"

namespace moelab {
namespace {

// N(mean, std^2) of one tensor's entries, measured once; draws shaped like it.
struct NormalStats {
  explicit NormalStats(const torch::Tensor& like)
      : mean(like.mean().item<double>()), std(like.std().item<double>()), options(like.options()) {}
  // `rows` x `cols` draws with `rng`.
  torch::Tensor draw(int64_t rows, int64_t cols, Rng& rng) const {
    std::vector<float> values(static_cast<size_t>(rows * cols));
    for (auto& value : values) value = static_cast<float>(mean + std * rng.normal());
    return torch::tensor(values).view({rows, cols}).to(options);
  }
  double mean, std;
  torch::TensorOptions options;
};

}  // namespace

int64_t upcycling_granularity(const MoELayerImpl& layer, int64_t dense_hidden) {
  const MoeConfig& config = layer.config();
  MOELAB_CHECK(dense_hidden % config.expert_hidden == 0 &&
                   config.experts % (dense_hidden / config.expert_hidden) == 0,
               "upcycling: {} experts of {} neurons cannot hold slices of a {}-neuron FFN",
               config.experts, config.expert_hidden, dense_hidden);
  return dense_hidden / config.expert_hidden;
}

void tie_router_groups(MoELayerImpl& layer, int64_t granularity) {
  if (granularity == 1) return;
  auto* router = dynamic_cast<LogitRouter*>(&layer.router());
  if (router == nullptr) {
    throw Error("granular upcycling ties the router rows of each group of copies: it needs a "
                "router with linear logits (not hash, soft_moe, stablemoe or xmoe)");
  }
  torch::NoGradGuard no_grad;
  auto weight = router->gate()->weight;                                  // [E, D]
  const int64_t experts = weight.size(0);
  auto leaders = torch::arange(experts, torch::kLong).div(granularity, "floor") * granularity;
  weight.copy_(weight.index_select(0, leaders.to(weight.device())));
}

RouteAverages route_averages(MoELayerImpl& layer, const torch::Tensor& x, RouteContext ctx) {
  torch::NoGradGuard no_grad;
  ctx.training = false;
  const RouteResult route = layer.router().route(x, ctx);
  if (!route.weight.defined()) {
    throw Error("upcycling needs a router that gives each token weighted experts (not soft_moe)");
  }
  const double tokens = static_cast<double>(x.size(0));
  return {route.weight.sum().item<double>() / tokens,
          static_cast<double>(route.token.numel()) / tokens};
}

void load_upcycled(MoELayerImpl& layer, const torch::Tensor& w1, const torch::Tensor& b1,
                   const torch::Tensor& w2, const torch::Tensor& b2, int64_t granularity,
                   double gate_sum) {
  const int64_t experts = layer.config().experts, size = layer.config().expert_hidden;
  const int64_t dim = w1.size(1);
  MOELAB_CHECK(w1.size(0) == granularity * size && gate_sum > 0,
               "load_upcycled: {} neurons are not {} slices of {} (gate sum {})", w1.size(0),
               granularity, size, gate_sum);
  auto slice = torch::arange(experts, torch::kLong).remainder(granularity).to(w1.device());  // [E]
  ExpertWeights to = layer.expert_weights();
  torch::NoGradGuard no_grad;
  to.w_in.copy_(w1.view({granularity, size, dim}).permute({0, 2, 1}).index_select(0, slice));
  to.b_in.copy_(b1.view({granularity, size}).index_select(0, slice));
  to.w_out.copy_(w2.t().reshape({granularity, size, dim}).index_select(0, slice) *
                 (static_cast<double>(granularity) / gate_sum));
  to.b_out.copy_((b2 / gate_sum).expand({experts, dim}));
}

torch::Tensor drop_reinitialise(MoELayerImpl& layer, double ratio, uint64_t seed) {
  const int64_t experts = layer.config().experts, size = layer.config().expert_hidden;
  const auto count = static_cast<int64_t>(std::floor(ratio * static_cast<double>(size)));
  ExpertWeights w = layer.expert_weights();
  const int64_t dim = w.w_in.size(1);
  torch::NoGradGuard no_grad;
  // The statistics of the weights as loaded, before any neuron changes.
  const NormalStats w_in(w.w_in), b_in(w.b_in), w_out(w.w_out);
  std::vector<torch::Tensor> dropped;
  for (int64_t e = 0; e < experts; ++e) {
    Rng rng = Rng::keyed({seed, static_cast<uint64_t>(e)});
    const auto picked = sample_without_replacement(size, count, rng);
    auto index = torch::tensor(picked, torch::kLong).to(w.w_in.device());  // [c]
    w.w_in[e].index_copy_(1, index, w_in.draw(dim, count, rng));           // [D, c]
    w.b_in[e].index_copy_(0, index, b_in.draw(1, count, rng).view({count}));
    w.w_out[e].index_copy_(0, index, w_out.draw(count, dim, rng));         // [c, D]
    dropped.push_back(std::get<0>(index.sort()));
  }
  return torch::stack(dropped);
}

}  // namespace moelab
