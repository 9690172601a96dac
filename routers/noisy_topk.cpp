// Noisily gated top-k routing with importance and load losses.
#include "routers/noisy_topk.h"

#include <cmath>

#include "routers/losses.h"
#include "routers/topk.h"

namespace moelab {
namespace {

torch::Tensor cv_squared(const torch::Tensor& values) {  // [E] -> scalar
  auto mean = values.mean();
  return (values - mean).pow(2).mean() / (mean.pow(2) + 1e-10);
}

torch::Tensor normal_cdf(const torch::Tensor& x) { return 0.5 * (1.0 + torch::erf(x / std::sqrt(2.0))); }

}  // namespace

void NoisyTopKOptions::check(const RouterShape& shape) const {
  check_k(k, shape);
  if (k >= shape.experts && load_coef > 0 && noise) {
    throw ConfigError::at_key("router.k", fmt::format("{}: the load loss needs k < "
                                                      "model.moe.experts = {}",
                                                      k, shape.experts));
  }
}

NoisyTopKRouter::NoisyTopKRouter(const NoisyTopKOptions& options, const RouterShape& shape)
    : LogitRouter(shape), options_(options) {
  noise_gate_ = register_module("noise_gate", torch::nn::Linear(torch::nn::LinearOptions(
                                                  shape.dim, shape.experts).bias(false)));
  torch::NoGradGuard no_grad;
  gate_->weight.zero_();
  noise_gate_->weight.zero_();
}

RouteResult NoisyTopKRouter::route(const torch::Tensor& x, const RouteContext& ctx) {
  auto noise_logits = torch::nn::functional::linear(x.to(logit_dtype_),
                                                    noise_gate_->weight.to(logit_dtype_));
  return regularised(decide_with_noise(logits(x), noise_logits, ctx));
}

RouteResult NoisyTopKRouter::decide(const torch::Tensor& logits, const RouteContext& ctx) {
  return decide_with_noise(logits, torch::zeros_like(logits), ctx);
}

RouteResult NoisyTopKRouter::decide_with_noise(const torch::Tensor& logits,
                                               const torch::Tensor& noise_logits,
                                               const RouteContext& ctx) {
  const bool noisy = ctx.training && options_.noise;
  auto noise_std = torch::nn::functional::softplus(noise_logits) + 1e-2;  // [T, E]
  auto scores = noisy ? logits + routing_noise_like(logits, ctx) * noise_std : logits;  // H [T, E]
  const int64_t k = options_.k;
  const int64_t keep = std::min<int64_t>(k + 1, logits.size(1));
  auto [top_scores, top_indices] = torch::topk(scores, keep, -1);  // [T, k+1]
  auto indices = top_indices.narrow(1, 0, k);
  auto gates = chosen_softmax(scores, indices);  // softmax(KeepTopK(H)) [T, k]
  RouteResult result = RouteResult::from_topk(indices, gates);
  result.logits = logits;
  result.probs = torch::softmax(logits, -1);

  const int64_t experts = logits.size(1);
  auto real = real_token_column(logits.size(0), ctx, logits.options());  // [T, 1]
  if (options_.importance_coef > 0) {
    auto importance = (torch::zeros({logits.size(0), experts}, gates.options())
                           .scatter(1, indices, gates) * real)
                          .sum(0);  // [E]
    result.aux_losses.emplace_back("importance", options_.importance_coef * cv_squared(importance));
  }
  if (options_.load_coef > 0 && noisy && keep > k) {
    // Threshold a score must beat to enter the top k: the k-th largest if the expert is not
    // in the top k, the (k+1)-th if it is.
    auto kth_in = top_scores.narrow(1, k, 1);       // [T, 1]
    auto kth_out = top_scores.narrow(1, k - 1, 1);  // [T, 1]
    auto in_top = scores > kth_in;                  // [T, E]
    auto threshold = torch::where(in_top, kth_in, kth_out);
    auto load = (normal_cdf((logits - threshold) / noise_std) * real).sum(0);  // [E]
    result.aux_losses.emplace_back("load", options_.load_coef * cv_squared(load));
  }
  add_token_choice_losses(result, logits, result.probs, options_.aux_coef, options_.z_coef, ctx);
  return result;
}

}  // namespace moelab
