// Quantile Balancing: a selection bias set each step from the quantiles of the step's scores.
#include "routers/quantile.h"

#include "routers/losses.h"

namespace moelab {

void QuantileOptions::check(const RouterShape& shape) const {
  if (k >= shape.experts) {
    throw ConfigError::at_key(
        "router.k", fmt::format("{}: must be < model.moe.experts = {} (quantile balancing cuts "
                                "at each token's (k+1)-th score)",
                                k, shape.experts));
  }
}

torch::Tensor exact_quantile_bias(const torch::Tensor& required, int64_t k) {
  const int64_t tokens = required.size(0), experts = required.size(1);
  const int64_t fair = tokens * k / experts;                                  // floor(q)
  auto target = std::get<0>(required.kthvalue(fair + 1, /*dim=*/0));         // [E]
  return target - target.mean();
}

torch::Tensor histogram_quantile_bias(const torch::Tensor& required, const torch::Tensor& bias,
                                      int64_t k, int64_t bins) {
  const int64_t tokens = required.size(0), experts = required.size(1);
  // alpha_t is some expert's s + b, in (min b, 1 + max b), and s in (0, 1): r in [lo, hi].
  auto lo = bias.min() - 1.0;                                                 // 0-dim
  auto width = (bias.max() + 1.0 - lo) / bins;                                // 0-dim
  auto bin = ((required - lo) / width)
                 .floor()
                 .clamp(0, bins - 1)
                 .to(torch::kLong)
                 .t()
                 .contiguous();                                               // [E, N]
  auto counts = torch::zeros({experts, bins}, bin.options())
                    .scatter_add_(1, bin, torch::ones_like(bin));             // [E, B]
  const double q = static_cast<double>(tokens * k) / static_cast<double>(experts);
  const int64_t rank = (tokens * k + experts - 1) / experts;                  // ceil(q) >= 1
  auto cumulative = counts.cumsum(1);                                         // [E, B]
  auto chosen = (cumulative < rank).sum(1, /*keepdim=*/true);                 // [E, 1]
  auto inside = counts.gather(1, chosen);                                     // [E, 1]
  auto before = cumulative.gather(1, chosen) - inside;                        // [E, 1]
  // In [0, 1]: before < ceil(q) <= before + inside.
  auto fraction = (q - before.to(torch::kDouble)) / inside.to(torch::kDouble);  // [E, 1]
  auto target = (lo + (chosen.to(torch::kDouble) + fraction).squeeze(1) * width)
                    .to(bias.scalar_type());                                  // [E]
  return target - target.mean();
}

QuantileRouter::QuantileRouter(const QuantileOptions& options, const RouterShape& shape)
    : LogitRouter(shape), options_(options) {
  bias_ = register_buffer("selection_bias", torch::zeros({shape.experts}));
}

RouteResult QuantileRouter::decide(const torch::Tensor& logits, const RouteContext& ctx) {
  auto scores = options_.score == "softmax" ? torch::softmax(logits, -1)
                                            : torch::sigmoid(logits);            // [T, E]
  auto [top, chosen] = (scores.detach() + bias_.to(scores.device())).topk(options_.k + 1, -1);
  auto indices = chosen.narrow(1, 0, options_.k);                                // [T, k]
  auto gates = scores.gather(1, indices);                                        // [T, k]
  if (options_.renormalize && options_.k > 1) gates = gates / gates.sum(-1, true);
  RouteResult result = RouteResult::from_topk(indices, gates);
  result.logits = logits;
  result.probs = torch::softmax(logits, -1);
  if (ctx.training) {
    auto cutoff = top.narrow(1, options_.k, 1);                                  // [T, 1] alpha
    step_required_.push_back(real_rows(cutoff - scores.detach(), ctx));          // [N_i, E]
  }
  add_token_choice_losses(result, logits, result.probs, 0.0, options_.z_coef, ctx);
  add_bias_metrics(result, bias_, indices,
                   [&] { return std::get<1>(torch::topk(scores.detach(), options_.k, -1)); }, ctx);
  return result;
}

void QuantileRouter::on_step_end(int64_t /*step*/) {
  if (step_required_.empty()) return;
  torch::NoGradGuard no_grad;
  auto required = torch::cat(step_required_).to(bias_.device());                 // [N, E]
  step_required_.clear();
  if (required.size(0) == 0) return;
  auto target = options_.estimator == "exact"
                    ? exact_quantile_bias(required, options_.k)
                    : histogram_quantile_bias(required, bias_, options_.k, options_.bins);
  bias_ += options_.rate * (target - bias_);
}

}  // namespace moelab
