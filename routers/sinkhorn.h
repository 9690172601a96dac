// The one log-domain Sinkhorn solver (used by ssr, sbase and DOT-MoE).
// Finds duals f [m], g [n] so that P = exp(log_kernel + f[:,None] + g[None,:]) has row sums
// exp(log_row) and column sums exp(log_col). Runs in fp32, without gradient unless
// options.differentiable, whatever the input precision; checks the relative column-marginal
// error only every `check_every` iterations (one host sync per check) and stops at `tol` or
// after `max_iters`.
#pragma once

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace moelab {

struct SinkhornOptions {
  int64_t max_iters = 100;
  double tol = 1e-4;        // max_j |colsum_j - target_j| / target_j
  int64_t check_every = 5;
  // Keep the iterations in the autograd graph (unrolled differentiation through the duals,
  // DOT-MoE's learned split); by default the duals carry no gradient.
  bool differentiable = false;
};

struct SinkhornResult {
  torch::Tensor f;           // [m] row duals
  torch::Tensor g;           // [n] column duals
  int64_t iterations = 0;
  double error = 0.0;        // relative column-marginal error at the end
  bool converged = false;    // error < tol before the iteration cap
};

// What a router logs of one solve: sinkhorn_iters, sinkhorn_err, and sinkhorn_capped (1 when
// the cap came before the tolerance: the plan is then only approximately balanced, and the
// trainer warns once per run).
std::vector<std::pair<std::string, torch::Tensor>> sinkhorn_metrics(const SinkhornResult& plan);

// The floating-point operations of a solve on an [m, n] kernel: each iteration is two
// log-sum-exp passes over the m x n matrix (an add, an exp, a sum and a max per element each),
// 8 m n per iteration, the counting rule's elementwise work made explicit because Sinkhorn
// repeats it (harness/model/flops.h).
double sinkhorn_flops(const SinkhornResult& plan);

SinkhornResult sinkhorn_log(const torch::Tensor& log_kernel,  // [m, n]
                            const torch::Tensor& log_row,     // [m]
                            const torch::Tensor& log_col,     // [n]
                            const SinkhornOptions& options = {});

// Balanced marginals for token->expert routing: every token ships 1, every expert takes m/n.
SinkhornResult sinkhorn_balanced(const torch::Tensor& log_kernel, const SinkhornOptions& options);

}  // namespace moelab
