// Every registered router, in one explicit list. Registry names are part of the interface
// (configs, sweeps and the results database refer to them).
#include "routers/registry.h"

#include "harness/core/registry.h"
#include "routers/aux_loss.h"
#include "routers/base.h"
#include "routers/deepseek_v3.h"
#include "routers/dot_moe.h"
#include "routers/expert_choice.h"
#include "routers/hash.h"
#include "routers/loss_free.h"
#include "routers/noisy_topk.h"
#include "routers/quantile.h"
#include "routers/remoe.h"
#include "routers/sbase.h"
#include "routers/smoe_dropout.h"
#include "routers/soft_moe.h"
#include "routers/ssr.h"
#include "routers/stablemoe.h"
#include "routers/topk.h"
#include "routers/topp.h"
#include "routers/usmoe.h"
#include "routers/xmoe.h"

namespace moelab {
namespace {

template <class R>
RouterEntry router_entry(const char* name, const char* summary) {
  using Options = typename R::Options;
  return RouterEntry{
      name,
      summary,
      []() -> std::unique_ptr<AnyOptions> { return std::make_unique<TypedOptions<Options>>(); },
      [](const AnyOptions& options, const RouterShape& shape) -> std::shared_ptr<Router> {
        return std::make_shared<R>(options_as<Options>(options), shape);
      },
      [](const AnyOptions& options, const RouterShape& shape) {
        options_as<Options>(options).check(shape);
      },
      std::is_base_of_v<LogitRouter, R>};
}

}  // namespace

const std::vector<RouterEntry>& router_registry() {
  static const std::vector<RouterEntry> entries = {
      router_entry<TopKRouter>("topk", "softmax token choice: each token takes its k best experts"),
      router_entry<NoisyTopKRouter>("noisy_topk",
                                    "noisy top-k gating with importance and load losses (Shazeer 2017)"),
      router_entry<AuxLossRouter>("aux_loss", "top-k with Switch balance loss 0.01 and z-loss 0.001"),
      router_entry<SsrRouter>("ssr", "Selective Sinkhorn Routing: transport-plan gates on a fraction p of steps"),
      router_entry<UsmoeRouter>("usmoe", "Unified SMoE: global top-c pairs of a mixed token/expert-choice score"),
      router_entry<ExpertChoiceRouter>("expert_choice", "each expert picks its top tokens in a group"),
      router_entry<SbaseRouter>("sbase", "S-BASE: Sinkhorn-balanced indices every training step"),
      router_entry<LossFreeRouter>("loss_free", "selection bias moved by the sign of the load error"),
      router_entry<BaseRouter>("base", "BASE: balanced top-1 assignment by auction in training"),
      router_entry<HashRouter>("hash", "fixed random table from token id (or position) to experts"),
      router_entry<XmoeRouter>("xmoe", "X-MoE: low-dimensional routing against normalised expert embeddings"),
      router_entry<StableMoeRouter>("stablemoe", "StableMoE: learn and distil routing, then freeze it"),
      router_entry<SmoeDropoutRouter>("smoe_dropout", "frozen random router with k rising over training"),
      router_entry<SoftMoeRouter>("soft_moe", "Soft MoE: slots as convex token mixtures (vision only)"),
      router_entry<DotMoeRouter>("dot_moe", "DOT-MoE router: top-k, unweighted sum, straight-through gradient"),
      router_entry<QuantileRouter>("quantile", "quantile balancing: selection bias set each step from score quantiles (Kimi K3)"),
      router_entry<DeepSeekV3Router>("deepseek_v3", "sigmoid affinities, loss-free bias, normalised gates, sequence-wise balance loss"),
      router_entry<TopPRouter>("topp", "dynamic top-p: experts until their probability mass reaches p"),
      router_entry<RemoeRouter>("remoe", "ReMoE: ReLU gates with an adaptive L1 penalty holding k active experts"),
  };
  return entries;
}

const RouterEntry& find_router(const std::string& name) {
  return find_entry(router_registry(), name, "router");
}

RouterShape router_shape(const ModelConfig& model, int64_t seed, int64_t block) {
  RouterShape shape{model.dim, routed_experts(model.moe), seed, block};
  shape.logit_dtype = model.moe.router_dtype == "fp64" ? torch::kDouble : torch::kFloat;
  return shape;
}

std::shared_ptr<Router> make_router(const PluginChoice& choice, const RouterShape& shape) {
  return find_router(choice.name).make(*choice.options, shape);
}

namespace {
struct NoOptions {
  template <class V>
  void visit(V&) {}
};
}  // namespace

std::unique_ptr<AnyOptions> router_options_by_name(const std::string& name) {
  if (name == "none") return std::make_unique<TypedOptions<NoOptions>>();
  return find_router(name).make_options();
}

void check_router_options(const std::string& name, const AnyOptions& options, int64_t dim,
                          int64_t experts) {
  find_router(name).validate(options, RouterShape{dim, experts});
}

bool router_decides_from_logits(const std::string& name) { return find_router(name).logit_router; }

}  // namespace moelab
