// The experts' FFNs: the per-expert reference loop and the expert-parallel autograd node
// (see grouped_experts.h).
#include "harness/model/grouped_experts.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <numeric>

#include "harness/core/error.h"
#include "harness/model/precision.h"

namespace moelab {

at::Tensor experts_reference(const at::Tensor& inputs, const ExpertWeights& experts,
                             const std::vector<int64_t>& rows_per_expert) {
  // One autograd node per tensor (split, unbind) rather than one slice/select per expert: the
  // backward of each select would zero-fill and add a gradient as large as all the experts.
  auto slices = inputs.split_with_sizes(rows_per_expert);                // E x [n_e, D]
  auto w_in = experts.w_in.unbind(0), b_in = experts.b_in.unbind(0);     // E x [D, H], [H]
  auto w_out = experts.w_out.unbind(0), b_out = experts.b_out.unbind(0); // E x [H, D], [D]
  std::vector<at::Tensor> outputs;
  for (size_t e = 0; e < rows_per_expert.size(); ++e) {
    if (rows_per_expert[e] == 0) continue;
    auto hidden = at::gelu(at::addmm(b_in[e], slices[e], w_in[e]));  // [n_e, H]
    outputs.push_back(at::addmm(b_out[e], hidden, w_out[e]));       // [n_e, D]
  }
  if (outputs.empty()) return at::zeros({0, inputs.size(1)}, inputs.options());
  return at::cat(outputs, 0);
}

namespace {

// The experts each of LibTorch's threads runs: largest first, each to the thread with the
// fewest rows so far (a fixed function of the sizes, so every run splits the same way).
std::vector<std::vector<int64_t>> experts_per_thread(const std::vector<int64_t>& rows) {
  const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  std::vector<int64_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return rows[a] > rows[b]; });
  std::vector<std::vector<int64_t>> lists(static_cast<size_t>(threads));
  std::vector<int64_t> load(static_cast<size_t>(threads), 0);
  for (int64_t e : order) {
    if (rows[e] == 0) continue;
    const auto least = std::min_element(load.begin(), load.end()) - load.begin();
    lists[least].push_back(e);
    load[least] += rows[e];
  }
  return lists;
}

// fn(e, first_row) for every expert with rows, experts spread over LibTorch's threads; the
// operators fn calls run single-threaded inside, and below autograd on every thread (the
// calling thread's autograd state is thread-local and does not reach OpenMP's workers).
template <typename Fn>
void for_each_expert(const std::vector<int64_t>& rows, const Fn& fn) {
  std::vector<int64_t> first(rows.size(), 0);
  std::exclusive_scan(rows.begin(), rows.end(), first.begin(), int64_t{0});
  const auto lists = experts_per_thread(rows);
  at::parallel_for(0, static_cast<int64_t>(lists.size()), 1, [&](int64_t begin, int64_t end) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    for (int64_t thread = begin; thread < end; ++thread) {
      for (int64_t e : lists[thread]) fn(e, first[e]);
    }
  });
}

const int64_t kRowDimIndex[] = {0};
const at::IntArrayRef kRowDim(kRowDimIndex);  // the rows of a [n, X] matrix

class ParallelExperts : public torch::autograd::Function<ParallelExperts> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& inputs,
                            const at::Tensor& w_in, const at::Tensor& b_in,
                            const at::Tensor& w_out, const at::Tensor& b_out,
                            std::vector<int64_t> rows) {
    const int64_t hidden_width = w_in.size(2);
    auto pre = at::empty({inputs.size(0), hidden_width}, inputs.options());     // [A', H]
    auto hidden = at::empty({inputs.size(0), hidden_width}, inputs.options());  // [A', H]
    auto out = at::empty_like(inputs);                                         // [A', D]
    for_each_expert(rows, [&](int64_t e, int64_t first) {
      const int64_t n = rows[e];
      auto pre_e = pre.narrow(0, first, n), hidden_e = hidden.narrow(0, first, n);  // [n, H]
      auto out_e = out.narrow(0, first, n);                                          // [n, D]
      at::addmm_out(pre_e, b_in[e], inputs.narrow(0, first, n), w_in[e]);
      at::gelu_out(hidden_e, pre_e);
      at::addmm_out(out_e, b_out[e], hidden_e, w_out[e]);
    });
    ctx->save_for_backward({inputs, w_in, w_out, pre, hidden});
    ctx->saved_data["rows"] = c10::IValue(rows);
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    // Computed outside autograd: a graph through it (create_graph) would miss second-order
    // terms.
    MOELAB_CHECK(!at::GradMode::is_enabled(),
                 "experts_parallel: no double backward (create_graph); use experts_reference");
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &inputs = saved[0], &w_in = saved[1], &w_out = saved[2], &pre = saved[3],
                     &hidden = saved[4];
    const std::vector<int64_t> rows = ctx->saved_data["rows"].toIntVector();
    const at::Tensor grad_out = grads[0].contiguous();  // [A', D]
    auto grad_inputs = at::empty_like(inputs);          // [A', D]
    auto grad_w_in = at::zeros_like(w_in), grad_w_out = at::zeros_like(w_out);
    auto grad_b_in = at::zeros({w_in.size(0), w_in.size(2)}, w_in.options());   // [E, H]
    auto grad_b_out = at::zeros({w_out.size(0), w_out.size(2)}, w_out.options());  // [E, D]
    for_each_expert(rows, [&](int64_t e, int64_t first) {
      const int64_t n = rows[e];
      auto g_out = grad_out.narrow(0, first, n);  // [n, D]
      auto g_w_out = grad_w_out[e], g_b_out = grad_b_out[e];
      auto g_w_in = grad_w_in[e], g_b_in = grad_b_in[e];
      auto g_inputs = grad_inputs.narrow(0, first, n);
      at::mm_out(g_w_out, hidden.narrow(0, first, n).t(), g_out);  // [H, D]
      at::sum_out(g_b_out, g_out, kRowDim);
      auto g_pre = at::gelu_backward(at::mm(g_out, w_out[e].t()), pre.narrow(0, first, n));
      at::mm_out(g_w_in, inputs.narrow(0, first, n).t(), g_pre);  // [D, H]
      at::sum_out(g_b_in, g_pre, kRowDim);
      at::mm_out(g_inputs, g_pre, w_in[e].t());  // [n, D]
    });
    return {grad_inputs, grad_w_in, grad_b_in, grad_w_out, grad_b_out, at::Tensor()};
  }
};

}  // namespace

// GCC 14 reports false -Warray-bounds and -Wstringop-overflow warnings inside LibTorch 2.x's
// Function::apply (a std::vector<bool> reserve in custom_function.h) once it is inlined here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
at::Tensor experts_parallel(const at::Tensor& inputs, const ExpertWeights& experts,
                            const std::vector<int64_t>& rows_per_expert) {
  MOELAB_CHECK(inputs.device().is_cpu(), "experts_parallel: CPU tensors only, got {}",
               inputs.device().str());
  MOELAB_CHECK(std::accumulate(rows_per_expert.begin(), rows_per_expert.end(), int64_t{0}) ==
                   inputs.size(0),
               "experts_parallel: the experts' rows do not add up to the {} input rows",
               inputs.size(0));
  return ParallelExperts::apply(inputs.contiguous(), experts.w_in, experts.b_in, experts.w_out,
                                experts.b_out, rows_per_expert);
}
#pragma GCC diagnostic pop

at::Tensor run_experts(const at::Tensor& inputs, const ExpertWeights& experts,
                       const std::vector<int64_t>& rows_per_expert) {
  // Under bf16 autocast the experts compute in bf16 like every other matrix product; the
  // casts are differentiable, so the weights' gradients arrive in fp32.
  const auto type = autocast_compute_type(inputs.device());
  const auto cast = [type](const at::Tensor& t) { return !type || t.scalar_type() == *type ? t : t.to(*type); };
  const ExpertWeights weights{cast(experts.w_in), cast(experts.b_in), cast(experts.w_out), cast(experts.b_out)};
  if (inputs.device().is_cpu()) return experts_parallel(cast(inputs), weights, rows_per_expert);
  return experts_reference(cast(inputs), weights, rows_per_expert);
}

}  // namespace moelab
