// MoE layer: capacity, permutation dispatch, experts, combine, shared metrics.
#include "harness/model/moe_layer.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>

#include "harness/core/error.h"
#include "harness/model/flops.h"
#include "harness/model/precision.h"
#include "harness/model/routing_diagnostics.h"

namespace moelab {
namespace {

// A decision made in fp64 (model.moe.router_dtype), its tensors back in fp32 for the combine,
// the losses and the metrics; the choices are the fp64 ones.
RouteResult in_fp32(RouteResult route) {
  auto narrow = [](torch::Tensor& t) {
    if (t.defined() && t.scalar_type() == torch::kDouble) t = t.to(torch::kFloat);
  };
  for (torch::Tensor* t : {&route.weight, &route.priority, &route.logits, &route.probs,
                           &route.soft_dispatch, &route.soft_combine}) {
    narrow(*t);
  }
  for (auto& named : route.aux_losses) narrow(named.second);
  for (auto& named : route.metrics) narrow(named.second);
  return route;
}

// Indices that order `key` ascending, ties kept in the order given by `within`.
torch::Tensor stable_order(const torch::Tensor& key, const torch::Tensor& within) {
  auto permuted = key.index_select(0, within);
  auto order = std::get<1>(torch::sort(permuted, /*stable=*/true, /*dim=*/0, /*descending=*/false));
  return within.index_select(0, order);
}

torch::Tensor init_uniform(std::vector<int64_t> shape, double bound) {
  return torch::empty(shape).uniform_(-bound, bound);
}

}  // namespace

Dispatch plan_dispatch(const RouteResult& route, int64_t experts, double capacity_factor,
                       const std::string& drop_policy) {
  Dispatch d;
  d.assignments = route.expert.numel();
  d.requested = torch::bincount(route.expert, /*weights=*/{}, experts);  // [E]
  auto identity = torch::arange(d.assignments, route.expert.options());  // [A]

  torch::Tensor within = identity;  // order inside an expert's slice
  if (capacity_factor > 0) {
    if (drop_policy == "probs") {
      within = std::get<1>(torch::sort(route.priority, /*stable=*/true, 0, /*descending=*/true));
    } else {
      within = std::get<1>(torch::sort(route.token, /*stable=*/true, 0, /*descending=*/false));
    }
  }
  auto order = stable_order(route.expert, within);  // [A], grouped by expert

  auto requested_host = d.requested.cpu();
  d.kept_per_expert.assign(requested_host.data_ptr<int64_t>(),
                           requested_host.data_ptr<int64_t>() + experts);
  if (capacity_factor > 0) {
    const auto capacity = d.capacity = static_cast<int64_t>(
        std::ceil(capacity_factor * static_cast<double>(d.assignments) / experts));
    auto sorted_expert = route.expert.index_select(0, order);            // [A]
    auto offsets = d.requested.cumsum(0) - d.requested;                  // [E]
    auto position = identity - offsets.index_select(0, sorted_expert);   // [A] rank in expert
    order = order.masked_select(position < capacity);                    // [A']
    for (auto& kept : d.kept_per_expert) kept = std::min(kept, capacity);
  }
  d.token = route.token.index_select(0, order);
  d.expert = route.expert.index_select(0, order);
  d.weight = route.weight.index_select(0, order);
  return d;
}

MoELayerImpl::MoELayerImpl(int64_t dim, const MoeConfig& config, std::shared_ptr<Router> router)
    : config_(config), router_(std::move(router)), dense_router_grad_(config.router_grad == "dense") {
  const int64_t experts = config.experts;
  const int64_t hidden = config.expert_hidden;
  register_module("router", router_);
  count_router_weights();
  w_in_ = register_parameter("w_in", init_uniform({experts, dim, hidden}, 1.0 / std::sqrt(dim)));
  b_in_ = register_parameter("b_in", torch::zeros({experts, hidden}));
  w_out_ = register_parameter("w_out",
                              init_uniform({experts, hidden, dim}, 1.0 / std::sqrt(hidden)));
  b_out_ = register_parameter("b_out", torch::zeros({experts, dim}));
  interval_load_ = register_buffer("interval_load", torch::zeros({experts}));
  null_kinds_ = config.null_experts.kinds();
  if (!null_kinds_.empty()) {
    const auto nulls = static_cast<int64_t>(null_kinds_.size());
    std::vector<float> copy, is_constant;
    for (const auto& kind : null_kinds_) {
      copy.push_back(kind == "copy" ? 1.0F : 0.0F);
      is_constant.push_back(kind == "constant" ? 1.0F : 0.0F);
    }
    null_copy_ = register_buffer("null_copy", torch::tensor(copy));
    null_is_constant_ = register_buffer("null_is_constant", torch::tensor(is_constant).view({nulls, 1}));
    null_constant_ = register_parameter("null_constant", torch::zeros({nulls, dim}));
  }
  if (config.shared_experts > 0) {  // each shared expert initialised as a routed one of its width
    const int64_t each = config.shared_hidden > 0 ? config.shared_hidden : hidden;
    const int64_t neurons = config.shared_experts * each;
    shared_w_in_ = register_parameter("shared_w_in", init_uniform({dim, neurons}, 1.0 / std::sqrt(dim)));
    shared_b_in_ = register_parameter("shared_b_in", torch::zeros({neurons}));
    shared_w_out_ = register_parameter("shared_w_out",
                                       init_uniform({neurons, dim}, 1.0 / std::sqrt(each)));
    shared_b_out_ = register_parameter("shared_b_out", torch::zeros({dim}));
    if (config.shared_gate == "sigmoid") {
      shared_gate_ = register_parameter("shared_gate", init_uniform({dim}, 1.0 / std::sqrt(dim)));
    }
  }
}

void MoELayerImpl::install_form(std::shared_ptr<TrainingForm> form) {
  MOELAB_CHECK(form_ == nullptr, "install_form: the layer has a training form already");
  form_ = register_module("form", std::move(form));
}

void MoELayerImpl::remove_form() {
  if (form_ == nullptr) return;
  unregister_module("form");
  form_ = nullptr;
}

std::shared_ptr<Router> MoELayerImpl::swap_router(std::shared_ptr<Router> router) {
  auto previous = router_;
  router_ = std::move(router);
  replace_module("router", router_);
  count_router_weights();
  return previous;
}

torch::Tensor MoELayerImpl::forward(const torch::Tensor& x, const RouteContext& ctx) {
  const auto start = std::chrono::steady_clock::now();
  RouteResult route = decide(x, ctx);
  if (ctx.valid.defined() && route.token.defined()) {  // padding never reaches an expert
    route = keep_assignments(route, real_assignments(route.token, ctx));
  }
  if (ctx.collect_metrics && ctx.record && route.probs.defined() && route.token.defined()) {
    add_selection_diagnostics(route, ctx);
  }
  if (ctx.probe && ctx.record) record_probe(x, route, ctx);
  const double route_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

  if (ctx.record) {
    for (const auto& [name, loss] : route.aux_losses) ctx.record->add_aux_loss(loss);
    ctx.record->compute.add("router", router_flops(x.size(0)) + route.solver_flops);
  }
  RouteResult nulls;  // the assignments to null experts, handled here at no FFN cost
  if (!null_kinds_.empty()) {
    if (route.soft_dispatch.defined()) {
      throw Error("model.moe.null_experts: soft routing mixes tokens into slots and has no "
                  "assignments for null experts to take");
    }
    MOELAB_CHECK(!form_, "model.moe.null_experts: not in a converted layer's training form");
    auto is_null = route.expert >= config_.experts;  // [A]
    nulls = keep_assignments(route, is_null);
    if (ctx.collect_metrics) {
      route.metrics.emplace_back(
          "null_frac", is_null.to(torch::kFloat).mean().nan_to_num(0.0).detach());
    }
    route = keep_assignments(route, is_null.logical_not());
  }
  if (ctx.training && route.expert.defined()) {  // the requested load since the last logging step
    torch::NoGradGuard no_grad;
    interval_load_.index_add_(0, route.expert,
                              torch::ones({route.expert.numel()}, interval_load_.options()));
  }
  torch::Tensor y;  // [T, D]
  if (form_) {
    y = forward_form(x, route, ctx, route_ms);
  } else if (route.soft_dispatch.defined()) {
    y = forward_soft(x, route, ctx, route_ms);
  } else {
    y = forward_sparse(x, route, ctx, route_ms);
    if (nulls.token.defined()) y = y + null_outputs(x, nulls);
  }
  if (dense_router_grad_ && ctx.training && torch::GradMode::is_enabled()) {
    y = y + dense_router_term(x, route, ctx);
  }
  if (shared_w_in_.defined()) y = y + shared_output(x, ctx);
  return y;
}

torch::Tensor MoELayerImpl::shared_output(const torch::Tensor& x, const RouteContext& ctx) {
  auto hidden = torch::gelu(torch::addmm(shared_b_in_, x, shared_w_in_));  // [T, S]
  auto y = torch::addmm(shared_b_out_, hidden, shared_w_out_);               // [T, D]
  if (shared_gate_.defined()) y = y * torch::sigmoid(torch::mv(x, shared_gate_.to(x.dtype()))).unsqueeze(1);
  if (ctx.record) {
    ctx.record->compute.add("ffn", ffn_flops(x.size(0), x.size(1), shared_w_in_.size(1)) +
                                       (shared_gate_.defined() ? linear_flops(x.size(0), x.size(1), 1) : 0.0));
  }
  return ctx.valid.defined() ? y * real_token_column(x.size(0), ctx, y.options()) : y;
}

torch::Tensor MoELayerImpl::dense_router_term(const torch::Tensor& x, const RouteResult& route,
                                              const RouteContext& ctx) {
  if (form_ || !route.probs.defined() || !route.token.defined() || !route.probs.requires_grad()) {
    throw Error(fmt::format("model.moe.router_grad = dense: the router {} {}", router_->name(),
                            form_ ? "trains in a converted layer's form"
                                  : "reports no differentiable probabilities over the experts "
                                    "beside its assignments (soft routing, a fixed or biased "
                                    "table)"));
  }
  const int64_t experts = config_.experts, tokens = x.size(0);
  const torch::Tensor outputs = every_expert(x);  // [E, T, D], outside the graph
  auto probs = route.probs.narrow(1, 0, experts);  // [T, E] the FFN experts' columns
  auto is_ffn = route.expert < experts;             // [A]
  auto selected = torch::zeros({tokens, experts}, probs.options().dtype(torch::kBool))
                      .index_put_({route.token.masked_select(is_ffn), route.expert.masked_select(is_ffn)},
                                  torch::ones({}, probs.options().dtype(torch::kBool)));  // [T, E]
  auto delta = (probs - probs.detach()).masked_fill(selected, 0.0);                       // [T, E], 0
  if (ctx.valid.defined()) delta = delta * real_token_column(tokens, ctx, delta.options());
  if (ctx.record) ctx.record->compute.add("experts", ffn_flops(experts * tokens, x.size(1), config_.expert_hidden));
  return torch::einsum("te,etd->td", {delta, outputs}).to(x.dtype());  // [T, D]
}

RouteResult MoELayerImpl::decide(const torch::Tensor& x, const RouteContext& ctx) {
  if (ctx.replay == nullptr) return route_in_fp32(x, ctx);
  if (ctx.replay->mode == RouteReplay::Mode::Record) {
    auto& recorded = ctx.replay->routes[ctx.layer];
    recorded = {x.size(0), route_in_fp32(x, ctx)};
    return recorded.route;
  }
  const auto found = ctx.replay->routes.find(ctx.layer);
  if (found == ctx.replay->routes.end()) {
    throw Error(fmt::format("routing replay: no decision was recorded for block {}", ctx.layer));
  }
  if (found->second.tokens != x.size(0)) {
    throw Error(fmt::format("routing replay in block {}: a decision for {} tokens, an input of {}",
                            ctx.layer, found->second.tokens, x.size(0)));
  }
  return found->second.route;
}

// Under bf16 autocast the router still decides from fp32 logits of the fp32 input, and its
// losses are fp32 (docs/design.md, Precision).
RouteResult MoELayerImpl::route_in_fp32(const torch::Tensor& x, const RouteContext& ctx) {
  Fp32Region fp32;
  auto input = as_fp32(x);  // [T, D]
  if (ctx.training && config_.router_jitter > 0) {  // x * U(1 - eps, 1 + eps), the router's copy only
    const double eps = config_.router_jitter;
    input = input * (1.0 - eps + 2.0 * eps * routing_uniform_like(input, ctx, "router jitter"));
  }
  return in_fp32(router_->route(input, ctx));
}

void MoELayerImpl::count_router_weights() {
  router_weights_ = 0;
  for (const auto& parameter : router_->parameters()) {
    if (parameter.dim() >= 2) router_weights_ += parameter.numel();
  }
}

// topk_margin and selected_mass over the real tokens, null experts included (before they
// are split off), as router metrics.
void MoELayerImpl::add_selection_diagnostics(RouteResult& route, const RouteContext& ctx) {
  torch::NoGradGuard no_grad;
  auto token = route.token;  // [A]
  if (ctx.valid.defined()) {  // assignments renumbered to the rows of the real tokens
    const auto row_of = ctx.valid.to(token.device()).to(torch::kLong).cumsum(0) - 1;  // [T]
    token = row_of.index_select(0, token);
  }
  for (auto& metric : selection_diagnostics(real_rows(route.probs, ctx), token, route.expert)) {
    route.metrics.push_back(metric);
  }
}

void MoELayerImpl::record_probe(const torch::Tensor& x, const RouteResult& route,
                                const RouteContext& ctx) {
  torch::NoGradGuard no_grad;
  LayerProbe probe;
  probe.layer = ctx.layer;
  probe.tokens = x.size(0);
  probe.choices = routed_experts(config_);
  if (route.token.defined()) {
    probe.token = route.token.detach();
    probe.expert = route.expert.detach();
    probe.weight = route.weight.detach().to(torch::kFloat);
  }
  const auto real = real_rows(x, ctx);
  probe.expert_cosine =
      mean_pairwise_cosine(every_expert(real.narrow(0, 0, std::min<int64_t>(real.size(0), kCosineTokens))));
  ctx.record->probes.push_back(std::move(probe));
}

torch::Tensor MoELayerImpl::every_expert(const torch::Tensor& rows) {
  torch::NoGradGuard no_grad;
  const int64_t experts = config_.experts, n = rows.size(0);
  // E copies of the rows, one contiguous slice per expert.
  auto outputs = run_experts(rows.detach().repeat({experts, 1}), expert_weights(),
                             std::vector<int64_t>(static_cast<size_t>(experts), n));  // [E*N, D]
  return as_fp32(outputs).view({experts, n, -1});
}

double MoELayerImpl::router_flops(int64_t tokens) const {
  return 2.0 * static_cast<double>(tokens) * static_cast<double>(router_weights_);
}

RouteResult MoELayerImpl::keep_assignments(const RouteResult& route, const torch::Tensor& keep) {
  RouteResult kept = route;
  for (auto* field : {&kept.token, &kept.expert, &kept.weight, &kept.priority}) {
    if (field->defined()) *field = field->masked_select(keep);
  }
  return kept;
}

torch::Tensor MoELayerImpl::null_outputs(const torch::Tensor& x, const RouteResult& nulls) {
  auto index = nulls.expert - config_.experts;                                  // [N]
  auto copy = null_copy_.index_select(0, index).unsqueeze(1).to(x.dtype());     // [N, 1]
  auto constant = (null_constant_ * null_is_constant_).index_select(0, index);  // [N, D]
  auto rows = copy * x.index_select(0, nulls.token) + constant.to(x.dtype());   // [N, D]
  return torch::zeros_like(x).index_add(0, nulls.token,
                                        rows * nulls.weight.to(x.dtype()).unsqueeze(1));  // [T, D]
}

torch::Tensor MoELayerImpl::forward_form(const torch::Tensor& x, const RouteResult& route,
                                         const RouteContext& ctx, double route_ms) {
  FormOutput out = form_->combine(x, route, ctx, expert_weights());
  if (ctx.record) {  // a training form runs every expert's neurons on every token
    ctx.record->compute.add("experts", ffn_flops(x.size(0), x.size(1), config_.experts * config_.expert_hidden));
  }
  if (ctx.collect_metrics && ctx.record) {
    torch::NoGradGuard no_grad;
    RouteResult measured = route;
    measured.metrics.insert(measured.metrics.end(), out.metrics.begin(), out.metrics.end());
    auto load = torch::bincount(route.expert, {}, config_.experts).to(torch::kFloat);  // [E]
    const int64_t real_tokens = real_rows(x, ctx).size(0);
    compute_metrics(measured, ctx, load, 0.0, torch::zeros({}),
                    static_cast<double>(route.expert.numel()) / std::max<int64_t>(real_tokens, 1),
                    0.0, route_ms);
  }
  return out.y;
}

torch::Tensor MoELayerImpl::forward_sparse(const torch::Tensor& x, const RouteResult& route,
                                           const RouteContext& ctx, double route_ms) {
  const double capacity_factor = !ctx.training && config_.eval_capacity_factor >= 0
                                     ? config_.eval_capacity_factor
                                     : config_.capacity_factor;
  Dispatch dispatch = plan_dispatch(route, config_.experts, capacity_factor, config_.drop_policy);
  auto inputs = x.index_select(0, dispatch.token);  // [A', D], contiguous per expert
  auto expert_out = run_experts(inputs, expert_weights(), dispatch.kept_per_expert);  // [A', D]
  auto weighted = expert_out * dispatch.weight.to(x.dtype()).unsqueeze(1);  // [A', D]
  auto y = torch::zeros_like(x).index_add(0, dispatch.token, weighted);     // [T, D]
  if (ctx.record) {  // the assignments the experts ran: after capacity, without null experts
    ctx.record->compute.add("experts", ffn_flops(dispatch.token.numel(), x.size(1), config_.expert_hidden));
  }
  if (ctx.collect_metrics && ctx.record) {
    torch::NoGradGuard no_grad;
    const int64_t kept = dispatch.token.numel();
    auto routed = real_rows(torch::zeros({x.size(0)}, x.options().dtype(torch::kFloat))
                                .index_fill_(0, dispatch.token, 1.0), ctx);  // [T_real] 1 if kept
    compute_metrics(route, ctx, dispatch.requested.to(torch::kFloat),
                    dispatch.assignments > 0
                        ? 1.0 - static_cast<double>(kept) / dispatch.assignments
                        : 0.0,
                    1.0 - routed.mean(),
                    static_cast<double>(kept) / std::max<int64_t>(routed.numel(), 1),
                    static_cast<double>(dispatch.capacity), route_ms);
  }
  return y;
}

torch::Tensor MoELayerImpl::forward_soft(const torch::Tensor& x, const RouteResult& route,
                                         const RouteContext& ctx, double route_ms) {
  const int64_t experts = config_.experts, dim = x.size(1);
  auto rows = route.soft_tokens.reshape({-1});                            // [G*Tg]
  const int64_t groups = route.soft_tokens.size(0), group_tokens = route.soft_tokens.size(1);
  auto grouped = x.index_select(0, rows).view({groups, group_tokens, dim});  // [G, Tg, D]
  auto dispatch = route.soft_dispatch.to(x.dtype());                          // [G, Tg, E*S]
  auto slots_in = torch::matmul(dispatch.transpose(1, 2), grouped);           // [G, E*S, D]
  const int64_t slots = slots_in.size(1) / experts;
  auto per_expert = slots_in.view({groups, experts, slots, dim})
                        .permute({1, 0, 2, 3})
                        .reshape({experts, groups * slots, dim});             // [E, G*S, D]
  auto hidden = torch::gelu(torch::baddbmm(b_in_.unsqueeze(1), per_expert, w_in_));  // [E, G*S, H]
  auto slots_out = torch::baddbmm(b_out_.unsqueeze(1), hidden, w_out_)              // [E, G*S, D]
                       .view({experts, groups, slots, dim})
                       .permute({1, 0, 2, 3})
                       .reshape({groups, experts * slots, dim});              // [G, E*S, D]
  auto combined = torch::matmul(route.soft_combine.to(x.dtype()), slots_out);  // [G, Tg, D]
  auto real = real_token_column(x.size(0), ctx, x.options());                  // [T, 1]
  auto y = torch::zeros_like(x).index_add(0, rows, combined.reshape({-1, dim})) * real;  // [T, D]
  if (ctx.record) {  // slot inputs and outputs are dense mixtures over a group's tokens
    ctx.record->compute.add("experts", ffn_flops(experts * groups * slots, dim, config_.expert_hidden) +
                                           2.0 * linear_flops(groups * group_tokens, experts * slots, dim));
  }
  if (ctx.collect_metrics && ctx.record) {
    torch::NoGradGuard no_grad;
    // Load of an expert: the combine mass its slots receive from real tokens.
    auto real_rows_mask = real.index_select(0, rows).view({groups, group_tokens, 1, 1});
    auto load = (route.soft_combine.detach().view({groups, group_tokens, experts, slots}) *
                 real_rows_mask.to(torch::kFloat))
                    .sum({0, 1, 3});  // [E]
    compute_metrics(route, ctx, load, 0.0, torch::zeros({}), static_cast<double>(experts), 0.0,
                    route_ms);
  }
  return y;
}

void MoELayerImpl::compute_metrics(const RouteResult& route, const RouteContext& ctx,
                                   const torch::Tensor& load_in,
                                   double dropped_frac, const torch::Tensor& unrouted_frac,
                                   double experts_per_token, double capacity, double route_ms) {
  const int64_t experts = config_.experts;
  auto load = load_in.detach().to(torch::kFloat);     // [E]
  auto mean = load.mean().clamp_min(1e-12);
  auto share = load / load.sum().clamp_min(1e-12);    // [E]
  auto entropy = -(share * torch::log(share.clamp_min(1e-12))).sum();

  std::vector<NamedTensor> metrics;
  auto add = [&](const std::string& name, torch::Tensor value) {
    metrics.emplace_back(name, value.detach().to(load.device(), torch::kFloat).reshape({}));
  };
  add("load_max_over_mean", load.max() / mean);
  add("load_min_over_mean", load.min() / mean);
  add("load_cv", (load - load.mean()).pow(2).mean().sqrt() / mean);
  add("load_entropy_norm", experts > 1 ? entropy / std::log(static_cast<double>(experts))
                                       : torch::ones({}));
  add("overload_factor", capacity > 0 ? load.max() / capacity : load.max() / mean);
  add("dead_experts", (load == 0).sum());
  add("load_gini", load_gini(load));
  if (ctx.training && !route.soft_dispatch.defined()) {
    // Experts under 1 % of their fair share of the assignments since the last logging step.
    auto interval_share = interval_load_ / interval_load_.sum().clamp_min(1.0);  // [E]
    add("dead_interval", (interval_share < 0.01 / static_cast<double>(experts)).sum());
    interval_load_.zero_();
  }
  add("dropped_frac", torch::full({}, dropped_frac));
  add("unrouted_frac", unrouted_frac);
  add("experts_per_token", torch::full({}, experts_per_token));
  if (route.probs.defined()) {
    auto p = real_rows(route.probs.detach(), ctx);
    add("gate_entropy", -(p * torch::log(p.clamp_min(1e-12))).sum(-1).mean());
  }
  if (route.logits.defined()) {
    add("router_z", torch::logsumexp(real_rows(route.logits.detach(), ctx), -1).mean());
  }
  for (const auto& [name, loss] : route.aux_losses) add("aux_" + name, loss);
  for (const auto& [name, value] : route.metrics) add(name, value);
  add("route_ms", torch::full({}, route_ms));
  for (int64_t e = 0; e < experts; ++e) add("load_e" + std::to_string(e), share[e]);
  ctx.record->layer_metrics.emplace_back(ctx.layer, std::move(metrics));
}

}  // namespace moelab
