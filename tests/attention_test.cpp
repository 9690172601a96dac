// Attention: the fused CPU kernel against softmax arithmetic written out by hand, against
// finite differences, against the LibTorch reference (values and gradients, causal or not,
// pair counts that do not fill the kernel's lanes), and independent of the thread count.
#include "harness/model/attention.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "test_util.h"

namespace moelab {
namespace {

// Random packed projections [B, L, 3 * D] that require gradients.
torch::Tensor random_qkv(int64_t batch, int64_t length, int64_t dim, torch::Dtype dtype,
                         uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn({batch, length, 3 * dim}, torch::dtype(dtype)).requires_grad_(true);
}

struct ValueAndGrad {
  torch::Tensor value, grad;
};

// The attention output and the gradient of sum(output * weights) with respect to qkv.
template <typename Fn>
ValueAndGrad value_and_grad(const torch::Tensor& qkv, const torch::Tensor& weights,
                            const Fn& attend) {
  auto input = qkv.detach().clone().requires_grad_(true);
  auto out = attend(input);
  (out * weights).sum().backward();
  return {out.detach(), input.grad()};
}

}  // namespace

TEST_CASE("fused attention of two tokens equals the softmax written out", "[attention]") {
  // One sequence of two tokens, one head of width 1 (scale 1): token i has query q_i, key k_i
  // and value v_i. Output_i = sum_j softmax_j(q_i * k_j) * v_j.
  const double q[2] = {0.5, -1.25}, k[2] = {2.0, 0.75}, v[2] = {3.0, -2.0};
  auto qkv = torch::tensor({q[0], k[0], v[0], q[1], k[1], v[1]}, torch::kDouble)
                 .view({1, 2, 3})
                 .requires_grad_(true);
  SECTION("bidirectional") {
    auto out = attention_fused(qkv, 1, /*causal=*/false);
    out.sum().backward();
    double grad_v[2] = {0, 0};
    for (int i = 0; i < 2; ++i) {
      const double e0 = std::exp(q[i] * k[0]), e1 = std::exp(q[i] * k[1]);
      const double p0 = e0 / (e0 + e1), p1 = e1 / (e0 + e1);
      CHECK(out[0][i][0].item<double>() == Approx(p0 * v[0] + p1 * v[1]).epsilon(1e-14));
      grad_v[0] += p0;  // d sum(out) / d v_j = sum_i p_ij
      grad_v[1] += p1;
    }
    CHECK(qkv.grad()[0][0][2].item<double>() == Approx(grad_v[0]).epsilon(1e-14));
    CHECK(qkv.grad()[0][1][2].item<double>() == Approx(grad_v[1]).epsilon(1e-14));
    // d out_0 / d q_0 = p0 p1 (k0 - k1) (v0 - v1) for two keys.
    const double e0 = std::exp(q[0] * k[0]), e1 = std::exp(q[0] * k[1]);
    const double p0 = e0 / (e0 + e1), p1 = e1 / (e0 + e1);
    CHECK(qkv.grad()[0][0][0].item<double>() ==
          Approx(p0 * p1 * (k[0] - k[1]) * (v[0] - v[1])).epsilon(1e-12));
  }
  SECTION("causal: the first token sees only itself") {
    auto out = attention_fused(qkv, 1, /*causal=*/true);
    CHECK(out[0][0][0].item<double>() == v[0]);
    const double e0 = std::exp(q[1] * k[0]), e1 = std::exp(q[1] * k[1]);
    CHECK(out[0][1][0].item<double>() == Approx((e0 * v[0] + e1 * v[1]) / (e0 + e1)).epsilon(1e-14));
  }
}

TEST_CASE("fused attention gradients match central differences", "[attention]") {
  auto qkv = random_qkv(2, 3, 4, torch::kDouble, 7);  // 2 heads of 2: 4 pairs
  auto weights = torch::randn({2, 3, 4}, torch::kDouble);
  for (bool causal : {false, true}) {
    auto loss = [&](const torch::Tensor& input) {
      return (attention_fused(input, 2, causal) * weights).sum().item<double>();
    };
    const auto analytic = value_and_grad(qkv, weights, [&](const torch::Tensor& input) {
                            return attention_fused(input, 2, causal);
                          }).grad.view({-1});
    auto flat = qkv.detach().clone().view({-1});
    const double h = 1e-6;
    for (int64_t index = 0; index < flat.numel(); index += 5) {
      auto plus = flat.clone(), minus = flat.clone();
      plus[index] += h;
      minus[index] -= h;
      const double numeric =
          (loss(plus.view(qkv.sizes())) - loss(minus.view(qkv.sizes()))) / (2 * h);
      CAPTURE(causal, index);
      CHECK(analytic[index].item<double>() == Approx(numeric).margin(1e-8));
    }
  }
}

TEST_CASE("fused attention equals the reference, values and gradients", "[attention]") {
  struct Case {
    int64_t batch, length, dim, heads;
  };
  // 6 pairs (padding lanes), 16 pairs (one full group), 34 pairs (a partial third group),
  // one token, and the quickstart ViT's shape.
  const Case cases[] = {{3, 5, 6, 2}, {4, 7, 16, 4}, {17, 3, 8, 2}, {5, 1, 4, 1}, {8, 16, 64, 4}};
  // double: the portable build, to rounding; float: the CPU's clone and its vectorised exp.
  const std::pair<torch::Dtype, double> precisions[] = {{torch::kDouble, 1e-12},
                                                        {torch::kFloat, 2e-5}};
  for (const auto& [dtype, tolerance] : precisions) {
    for (const Case& c : cases) {
      for (bool causal : {false, true}) {
        CAPTURE(dtype, c.batch, c.length, c.dim, c.heads, causal);
        auto qkv = random_qkv(c.batch, c.length, c.dim, dtype, 11);
        auto weights = torch::randn({c.batch, c.length, c.dim}, torch::dtype(dtype));
        const auto fused = value_and_grad(qkv, weights, [&](const torch::Tensor& input) {
          return attention_fused(input, c.heads, causal);
        });
        const auto reference = value_and_grad(qkv, weights, [&](const torch::Tensor& input) {
          return attention_reference(input, c.heads, causal, 0.0, false);
        });
        CHECK(torch::allclose(fused.value, reference.value, tolerance, tolerance));
        CHECK(torch::allclose(fused.grad, reference.grad, tolerance, tolerance));
      }
    }
  }
  SECTION("float, scores tens apart: the exp underflows where the reference's does") {
    // Near-one-hot probabilities amplify every rounding of the scores, so both float
    // implementations are measured against the reference in double on the same inputs.
    auto qkv = (random_qkv(4, 9, 8, torch::kFloat, 23).detach() * 12).requires_grad_(true);
    auto weights = torch::randn({4, 9, 8});
    for (bool causal : {false, true}) {
      CAPTURE(causal);
      const auto fused = value_and_grad(qkv, weights, [&](const torch::Tensor& input) {
        return attention_fused(input, 2, causal);
      });
      const auto reference = value_and_grad(qkv, weights, [&](const torch::Tensor& input) {
        return attention_reference(input, 2, causal, 0.0, false);
      });
      const auto exact = value_and_grad(qkv.to(torch::kDouble), weights.to(torch::kDouble),
                                        [&](const torch::Tensor& input) {
                                          return attention_reference(input, 2, causal, 0.0, false);
                                        });
      auto error = [](const torch::Tensor& a, const torch::Tensor& b) {
        return (a.to(torch::kDouble) - b).abs().max().item<double>();
      };
      const double fused_error = error(fused.value, exact.value);
      const double reference_error = error(reference.value, exact.value);
      CAPTURE(fused_error, reference_error);
      CHECK(fused_error <= 2 * reference_error + 1e-6);
      CHECK(error(fused.grad, exact.grad) <= 2 * error(reference.grad, exact.grad) + 1e-6);
      CHECK(fused.value.isfinite().all().item<bool>());
    }
  }
}

TEST_CASE("fused attention gives the same bits on one thread and on two", "[attention]") {
  auto qkv = random_qkv(40, 16, 64, torch::kFloat, 17);  // 160 pairs: 10 groups of lanes
  auto weights = torch::randn({40, 16, 64});
  auto attend = [](const torch::Tensor& input) { return attention_fused(input, 4, true); };
  ValueAndGrad one, two;
  {
    testing::ThreadCountScope threads(1);
    one = value_and_grad(qkv, weights, attend);
  }
  {
    testing::ThreadCountScope threads(2);
    REQUIRE(testing::parallel_for_threads(10) == 2);  // the groups really split
    two = value_and_grad(qkv, weights, attend);
  }
  CHECK(torch::equal(one.value, two.value));
  CHECK(torch::equal(one.grad, two.grad));
}

TEST_CASE("fused attention: no probabilities kept without a gradient, no double backward",
          "[attention]") {
  auto qkv = random_qkv(6, 5, 12, torch::kFloat, 29);
  const auto with_grad = attention_fused(qkv, 3, true);
  torch::Tensor without_grad;
  {
    torch::NoGradGuard no_grad;
    without_grad = attention_fused(qkv, 3, true);
  }
  CHECK_FALSE(without_grad.requires_grad());
  CHECK(torch::equal(with_grad.detach(), without_grad));
  CHECK_THROWS_WITH(torch::autograd::grad({with_grad.sum()}, {qkv}, {}, true, true),
                    Catch::Contains("no double backward"));
}

TEST_CASE("attention takes the reference where the kernel does not apply", "[attention]") {
  auto qkv = random_qkv(2, 4, 8, torch::kFloat, 19).detach();
  SECTION("no dropout, or not training: the kernel") {
    CHECK(torch::equal(attention(qkv, 2, false, 0.0, true), attention_fused(qkv, 2, false)));
    CHECK(torch::equal(attention(qkv, 2, false, 0.5, false), attention_fused(qkv, 2, false)));
  }
  SECTION("dropout while training: the reference with the same random draws") {
    torch::manual_seed(5);
    auto ours = attention(qkv, 2, false, 0.5, true);
    torch::manual_seed(5);
    CHECK(torch::equal(ours, attention_reference(qkv, 2, false, 0.5, true)));
  }
  SECTION("a non-contiguous input is made contiguous") {
    auto wide = torch::randn({2, 4, 48});
    auto strided = wide.narrow(2, 0, 24);
    CHECK(torch::allclose(attention(strided, 2, false, 0.0, false),
                          attention_reference(strided, 2, false, 0.0, false), 1e-5, 1e-6));
  }
  SECTION("the kernel refuses what it cannot compute") {
    CHECK_THROWS_WITH(attention_fused(qkv.to(torch::kHalf), 2, false),
                      Catch::Contains("float or double"));
    CHECK_THROWS_WITH(attention_fused(qkv, 5, false), Catch::Contains("5 heads"));
  }
}

}  // namespace moelab
