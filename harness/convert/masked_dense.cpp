// The masked-dense training form of converted layers, and loading and exporting their experts.
#include "harness/convert/masked_dense.h"

#include <cmath>

#include "harness/convert/neuron_split.h"
#include "harness/core/error.h"

namespace moelab {

MaskedDenseOptions MaskedDenseOptions::from(const RunConfig& config) {
  const ConvertConfig& convert = config.convert;
  MaskedDenseOptions options;
  options.learn_split = convert.method == "dot_moe";
  options.tau_start = convert.tau_start;
  options.tau_end = convert.tau_end;
  options.anneal_steps = std::llround(convert.tau_anneal * static_cast<double>(config.train.steps));
  options.sinkhorn_iters = convert.sinkhorn_iters;
  options.affinity_std = convert.affinity_std;
  options.affinity_scale = convert.affinity_lr_scale;
  options.unrolled = convert.split_grad == "unrolled";
  return options;
}

double MaskedDenseOptions::tau(int64_t step) const {
  if (anneal_steps <= 0 || step >= anneal_steps) return tau_end;
  const double progress = static_cast<double>(step) / static_cast<double>(anneal_steps);
  return tau_start + (tau_end - tau_start) * progress;
}

MaskedDenseImpl::MaskedDenseImpl(int64_t experts, int64_t expert_hidden,
                                 const MaskedDenseOptions& options)
    : experts_(experts), expert_hidden_(expert_hidden), options_(options) {
  if (options_.learn_split) {
    affinity_ = register_parameter(
        "affinity", torch::randn({experts * expert_hidden, experts}) *
                        (options_.affinity_std / options_.affinity_scale));
  }
}

FormOutput MaskedDenseImpl::combine(const torch::Tensor& x, const RouteResult& route,
                                    const RouteContext& ctx, const ExpertWeights& experts) {
  MOELAB_CHECK(route.probs.defined() && !route.soft_dispatch.defined(),
               "the masked training form needs a token-choice router with probabilities "
               "(dot_moe)");
  const int64_t neurons = experts_ * expert_hidden_;
  const int64_t tokens = x.size(0), dim = x.size(1);
  auto probs = route.probs.to(x.dtype());                                       // [T, E]
  auto chosen = torch::zeros({tokens, experts_}, x.options())
                    .index_put_({route.token, route.expert},
                                torch::ones({route.token.numel()}, x.options()));  // [T, E]
  auto r_ste = chosen + (probs - probs.detach());                               // [T, E]
  FormOutput out;
  torch::Tensor membership;                                                     // [H, E]
  if (options_.learn_split && ctx.training) {
    const double tau = options_.tau(ctx.step);
    LearnedSplit learned = learned_split(affinities(), tau, options_.sinkhorn_iters, options_.unrolled);
    membership = learned.ste.to(x.dtype());
    out.metrics.emplace_back("split_tau", torch::full({}, tau));
    out.metrics.emplace_back("sinkhorn_iters",
                             torch::full({}, static_cast<double>(learned.iterations)));
    out.metrics.emplace_back("sinkhorn_err", torch::full({}, learned.error));
  } else {
    membership = split_matrix(split(), experts_).to(x.options());
  }
  auto mask = r_ste.mm(membership.t());                                                // [T, H]
  auto w_in = experts.w_in.permute({1, 0, 2}).reshape({dim, neurons});                // [D, H]
  auto hidden = torch::gelu(torch::addmm(experts.b_in.reshape({neurons}), x, w_in));   // [T, H]
  out.y = (hidden * mask).mm(experts.w_out.reshape({neurons, dim})) +
          r_ste.mm(experts.b_out);                                                     // [T, D]
  return out;
}

void MaskedDenseImpl::seed_affinity(const torch::Tensor& assignment, double margin) {
  MOELAB_CHECK(affinity_.defined(), "seed_affinity: this layer does not learn its split");
  torch::NoGradGuard no_grad;
  affinity_.add_(split_matrix(assignment, experts_).to(affinity_.options()) *
                 (margin / options_.affinity_scale));
}

torch::Tensor MaskedDenseImpl::split() const {
  if (options_.learn_split) {
    torch::NoGradGuard no_grad;
    return learned_split(affinities(), options_.tau_end, options_.sinkhorn_iters).assignment;
  }
  return torch::arange(experts_ * expert_hidden_, torch::kLong).div(expert_hidden_, "floor");
}

MaskedDense install_masked_dense(MoELayerImpl& layer, const MaskedDenseOptions& options) {
  MaskedDense form(layer.config().experts, layer.config().expert_hidden, options);
  form->to(layer.expert_weights().w_in.device());
  layer.install_form(form.ptr());
  return form;
}

void load_dense(MoELayerImpl& layer, const torch::Tensor& w1, const torch::Tensor& b1,
                const torch::Tensor& w2, const torch::Tensor& b2, const torch::Tensor& order,
                int64_t k) {
  const int64_t experts = layer.config().experts, size = layer.config().expert_hidden;
  const int64_t dim = w1.size(1);
  MOELAB_CHECK(w1.size(0) == experts * size && order.numel() == experts * size,
               "load_dense: a dense FFN of {} neurons cannot fill {} experts of {}", w1.size(0),
               experts, size);
  ExpertWeights to = layer.expert_weights();
  torch::NoGradGuard no_grad;
  to.w_in.copy_(w1.t().index_select(1, order).view({dim, experts, size}).permute({1, 0, 2}));
  to.b_in.copy_(b1.index_select(0, order).view({experts, size}));
  to.w_out.copy_(w2.t().index_select(0, order).view({experts, size, dim}));
  to.b_out.copy_((b2 / static_cast<double>(k)).expand({experts, dim}));
}

void export_split(MoELayerImpl& layer, const MaskedDenseImpl& form) {
  const int64_t experts = layer.config().experts, size = layer.config().expert_hidden;
  ExpertWeights w = layer.expert_weights();
  const int64_t dim = w.w_in.size(1), neurons = experts * size;
  auto order = expert_major_order(form.split()).to(w.w_in.device());  // [E*s]
  torch::NoGradGuard no_grad;
  auto w_in = w.w_in.permute({1, 0, 2}).reshape({dim, neurons}).index_select(1, order);
  w.w_in.copy_(w_in.view({dim, experts, size}).permute({1, 0, 2}));
  w.b_in.copy_(w.b_in.reshape({neurons}).index_select(0, order).view({experts, size}));
  w.w_out.copy_(w.w_out.reshape({neurons, dim}).index_select(0, order).view({experts, size, dim}));
  layer.remove_form();
}

torch::Tensor all_expert_outputs(const MoELayerImpl& layer, const torch::Tensor& x,
                                 const torch::Tensor& split) {
  const int64_t experts = layer.config().experts;
  const int64_t neurons = experts * layer.config().expert_hidden, dim = x.size(1);
  const ExpertWeights w = layer.expert_weights();
  auto membership = split_matrix(split, experts).to(x.options()).t();            // [E, H]
  auto w_in = w.w_in.permute({1, 0, 2}).reshape({dim, neurons});                 // [D, H]
  auto hidden = torch::gelu(torch::addmm(w.b_in.reshape({neurons}), x, w_in));    // [T, H]
  auto masked = hidden.unsqueeze(0) * membership.unsqueeze(1);                   // [E, T, H]
  auto w_out = w.w_out.reshape({neurons, dim}).unsqueeze(0).expand({experts, neurons, dim});
  return torch::baddbmm(w.b_out.unsqueeze(1), masked, w_out);                    // [E, T, D]
}

torch::Tensor contiguous_split(const MoELayerImpl& layer) {
  const int64_t size = layer.config().expert_hidden;
  return torch::arange(layer.config().experts * size, torch::kLong).div(size, "floor");
}

}  // namespace moelab
