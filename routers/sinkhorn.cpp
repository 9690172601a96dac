// Log-domain Sinkhorn-Knopp with a relative tolerance and a hard iteration cap.
#include "routers/sinkhorn.h"

#include <cmath>
#include <optional>

#include "harness/core/error.h"

namespace moelab {
namespace {

double column_error(const torch::Tensor& log_kernel, const torch::Tensor& f,
                    const torch::Tensor& g, const torch::Tensor& log_col) {
  torch::NoGradGuard no_grad;
  auto log_colsum = torch::logsumexp(log_kernel + f.unsqueeze(1), 0) + g;  // [n]
  // |exp(a) - exp(b)| / exp(b) = |exp(a - b) - 1|
  return (log_colsum - log_col).exp().sub(1.0).abs().max().item<double>();
}

}  // namespace

SinkhornResult sinkhorn_log(const torch::Tensor& log_kernel, const torch::Tensor& log_row,
                            const torch::Tensor& log_col, const SinkhornOptions& options) {
  MOELAB_CHECK(log_kernel.dim() == 2, "sinkhorn: kernel must be [m, n]");
  MOELAB_CHECK(options.max_iters >= 1 && options.check_every >= 1 && options.tol > 0,
               "sinkhorn: max_iters, check_every and tol must be positive");
  std::optional<torch::NoGradGuard> no_grad;
  if (!options.differentiable) no_grad.emplace();
  auto kernel = log_kernel.to(torch::kFloat);                // [m, n]; no graph without grad
  auto row = log_row.detach().to(kernel.options());          // [m]
  auto col = log_col.detach().to(kernel.options());          // [n]
  SinkhornResult result;
  result.f = torch::zeros({kernel.size(0)}, kernel.options());
  result.g = torch::zeros({kernel.size(1)}, kernel.options());
  for (int64_t it = 1; it <= options.max_iters; ++it) {
    result.g = col - torch::logsumexp(kernel + result.f.unsqueeze(1), 0);  // column step
    result.f = row - torch::logsumexp(kernel + result.g.unsqueeze(0), 1);  // row step
    result.iterations = it;
    if (it % options.check_every == 0 || it == options.max_iters) {
      result.error = column_error(kernel, result.f, result.g, col);
      result.converged = result.error < options.tol;
      if (result.converged) break;
    }
  }
  return result;
}

std::vector<std::pair<std::string, torch::Tensor>> sinkhorn_metrics(const SinkhornResult& plan) {
  return {{"sinkhorn_iters", torch::full({}, static_cast<double>(plan.iterations))},
          {"sinkhorn_err", torch::full({}, plan.error)},
          {"sinkhorn_capped", torch::full({}, plan.converged ? 0.0 : 1.0)}};
}

double sinkhorn_flops(const SinkhornResult& plan) {
  return 8.0 * static_cast<double>(plan.iterations) * static_cast<double>(plan.f.numel()) *
         static_cast<double>(plan.g.numel());
}

SinkhornResult sinkhorn_balanced(const torch::Tensor& log_kernel, const SinkhornOptions& options) {
  const int64_t m = log_kernel.size(0), n = log_kernel.size(1);
  auto opts = log_kernel.options().dtype(torch::kFloat);
  return sinkhorn_log(log_kernel, torch::zeros({m}, opts),
                      torch::full({n}, std::log(static_cast<double>(m) / n), opts), options);
}

}  // namespace moelab
