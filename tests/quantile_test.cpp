// Quantile Balancing (`quantile`) against hand-worked arithmetic of the Kimi K3 report's rule:
// the cutoff at each token's (k+1)-th biased sigmoid score, the exact Eq. 14 order statistic,
// the Appendix D histogram, pooling over a step's micro-batches, and what stays out of it.
#include "routers/quantile.h"

#include "routers/registry.h"
#include "test_util.h"

namespace moelab {
namespace {

std::shared_ptr<QuantileRouter> quantile_router(std::vector<std::string> overrides) {
  overrides.push_back("router.name=quantile");
  overrides.push_back("model.moe.experts=4");
  auto router = std::dynamic_pointer_cast<QuantileRouter>(
      make_router(parse_run_config("", "t.yaml", overrides).router, RouterShape{4, 4, 0, 0}));
  REQUIRE(router != nullptr);
  return router;
}

RouteContext training() {
  RouteContext ctx;
  ctx.training = true;
  ctx.step = 1;
  return ctx;
}

// Logits whose sigmoids are these scores [T, E].
torch::Tensor logits_of(const std::vector<std::vector<double>>& scores) {
  std::vector<double> flat;
  for (const auto& row : scores) flat.insert(flat.end(), row.begin(), row.end());
  return torch::logit(torch::tensor(flat, torch::kDouble))
      .to(torch::kFloat)
      .view({static_cast<int64_t>(scores.size()), -1});
}

void check_bias(const torch::Tensor& bias, const std::vector<double>& expected) {
  REQUIRE(bias.numel() == static_cast<int64_t>(expected.size()));
  for (size_t e = 0; e < expected.size(); ++e) {
    INFO("expert " << e);
    CHECK(bias[static_cast<int64_t>(e)].item<double>() == Approx(expected[e]).margin(1e-6));
  }
}

// The report's Figure 5 case: m = 8 tokens, n = 4 experts, k = 1, loads (4, 3, 1, 0), fair
// share q = 2. With b = 0 each token's cutoff alpha_t is its second score:
//   t0 (.8 .1 .6 .3) e0, alpha .6   t4 (.5 .8 .4 .1) e1, alpha .5
//   t1 (.8 .4 .2 .1) e0, alpha .4   t5 (.6 .9 .4 .3) e1, alpha .6
//   t2 (.9 .5 .2 .4) e0, alpha .5   t6 (.6 .9 .4 .7) e1, alpha .7
//   t3 (.8 .7 .1 .5) e0, alpha .7   t7 (.6 .2 .8 .1) e2, alpha .6
// and the required biases r_te = alpha_t - s_te, by expert over t0..t7:
//   e0: -.2 -.4 -.4 -.1  0  0 .1  0    sorted -.4 -.4 [-.2] -.1 ...
//   e1:  .5  0   0   0 -.3 -.3 -.2 .4   sorted -.3 -.3 [-.2]  0  ...
//   e2:  0  .2  .3  .6  .1  .2  .3 -.2   sorted -.2  0  [.1]  .2 ...
//   e3: .3  .3  .1  .2  .4  .3  0  .5    sorted  0  .1  [.2]  .3 ...
// Eq. 14: b_e = the (q + 1)-th smallest r_.e = (-.2, -.2, .1, .2), mean -.025, centred
// (-.175, -.175, .125, .225).
const std::vector<std::vector<double>> kFigure5 = {
    {0.8, 0.1, 0.6, 0.3}, {0.8, 0.4, 0.2, 0.1}, {0.9, 0.5, 0.2, 0.4}, {0.8, 0.7, 0.1, 0.5},
    {0.5, 0.8, 0.4, 0.1}, {0.6, 0.9, 0.4, 0.3}, {0.6, 0.9, 0.4, 0.7}, {0.6, 0.2, 0.8, 0.1}};
const std::vector<double> kFigure5Bias = {-0.175, -0.175, 0.125, 0.225};

std::vector<int64_t> loads(const RouteResult& r) {
  return testing::as_vector(torch::bincount(r.expert, {}, 4));
}

}  // namespace

TEST_CASE("quantile balancing sets each expert's bias to the Eq. 14 order statistic",
          "[quantile][router]") {
  const auto logits = logits_of(kFigure5);
  auto router = quantile_router({"router.k=1"});
  RouteResult before = router->decide(logits, training());
  CHECK(loads(before) == std::vector<int64_t>{4, 3, 1, 0});
  router->on_step_end(1);
  check_bias(router->bias(), kFigure5Bias);
  // Routed again with that bias, the same tokens split 2 / 2 / 2 / 2 (the report's figure):
  // t0 .625 -.075 [.725] .525, t1 [.625] .225 .325 .325, t2 [.725] .325 .325 .625,
  // t3 .625 .525 .225 [.725], t4 .325 [.625] .525 .325, t5 .425 [.725] .525 .525,
  // t6 .425 .725 .525 [.925], t7 .425 .025 [.925] .325.
  RouteResult after = router->decide(logits, RouteContext{});
  CHECK(testing::as_vector(after.expert) == std::vector<int64_t>{2, 0, 0, 3, 1, 1, 3, 2});
  CHECK(loads(after) == std::vector<int64_t>{2, 2, 2, 2});
  // The gate is the unbiased score (t0 took e2 at .6); the bias only chooses (Eq. 13).
  CHECK(after.weight[0].item<double>() == Approx(0.6));
  // With k = 2 the two gates are the scores renormalised: t0 takes e0 and e2, .8 and .6.
  auto pair = quantile_router({"router.k=2"});
  RouteResult two = pair->decide(logits.narrow(0, 0, 1), RouteContext{});
  CHECK(testing::as_vector(two.expert) == std::vector<int64_t>{0, 2});
  CHECK(two.weight[0].item<double>() == Approx(0.8 / 1.4));
  CHECK(two.weight[1].item<double>() == Approx(0.6 / 1.4));
}

TEST_CASE("quantile balancing pools a step's micro-batches and skips padding and evaluation",
          "[quantile][router]") {
  const auto logits = logits_of(kFigure5);
  // Two training forwards of four tokens each, one optimizer step: the quantile of the eight
  // pooled tokens, as one forward gives (averaging each micro-batch's own second-smallest r
  // instead would give (-.2, -.15, .15, .25) before centring).
  auto pooled = quantile_router({"router.k=1"});
  pooled->decide(logits.narrow(0, 0, 4), training());
  pooled->decide(logits.narrow(0, 4, 4), training());
  pooled->on_step_end(1);
  check_bias(pooled->bias(), kFigure5Bias);
  // A padded ninth token that would want expert 3 changes nothing.
  auto padded = quantile_router({"router.k=1"});
  RouteContext ctx = training();
  ctx.valid = torch::ones({9}, torch::kBool);
  ctx.valid[8] = false;
  auto with_pad = torch::cat({logits, logits_of({{0.1, 0.1, 0.1, 0.99}})});
  padded->decide(with_pad, ctx);
  padded->on_step_end(1);
  check_bias(padded->bias(), kFigure5Bias);
  // Evaluation forwards are not counted; a step without training forwards keeps the bias.
  padded->decide(logits.narrow(0, 0, 4), RouteContext{});
  padded->on_step_end(2);
  check_bias(padded->bias(), kFigure5Bias);
  // rate = 0.5 moves half of the way from 0.
  auto half = quantile_router({"router.k=1", "router.rate=0.5"});
  half->decide(logits, training());
  half->on_step_end(1);
  check_bias(half->bias(), {-0.0875, -0.0875, 0.0625, 0.1125});
}

TEST_CASE("quantile balancing's histogram estimator follows the report's Appendix D",
          "[quantile][router]") {
  const auto logits = logits_of(kFigure5);
  auto router = quantile_router({"router.k=1", "router.estimator=histogram", "router.bins=3"});
  router->decide(logits, training());
  router->on_step_end(1);
  // b = 0: 3 bins over [-1, 1], width 2/3, edges -1/3 and 1/3; target rank q = 2. Counts per
  // bin and the bin where the cumulative count first reaches 2 (r as in the case above):
  //   e0 (2, 6, 0): bin 0, 2/2 of the way in: -1 + 2/3         = -1/3
  //   e1 (0, 6, 2): bin 1, 2/6:                -1 + (1 + 1/3) 2/3 = -1/9
  //   e2 (0, 7, 1): bin 1, 2/7:                -1 + (1 + 2/7) 2/3 = -1/7
  //   e3 (0, 6, 2): bin 1, 2/6:                                    -1/9
  // mean -11/63, centred (-10, 4, 2, 4) / 63.
  check_bias(router->bias(), {-10.0 / 63, 4.0 / 63, 2.0 / 63, 4.0 / 63});
  // The next step's bins span [min b - 1, max b + 1] = [-73/63, 67/63], width 20/27, and the
  // cutoffs use the new bias. On the same tokens the counts per bin are e0 (0, 8, 0),
  // e1 (1, 6, 1), e2 (0, 5, 3), e3 (0, 4, 4), so b = -73/63 + (1 + f) 20/27 with f = 2/8,
  // 1/6, 2/5, 2/4: (-132, -167, -69, -27) / 567, centred (-19, -39, 17, 41) / 324 (the same
  // numbers from a python3-torch implementation of Appendix D).
  router->decide(logits, training());
  router->on_step_end(2);
  check_bias(router->bias(), {-19.0 / 324, -39.0 / 324, 17.0 / 324, 41.0 / 324});
}

TEST_CASE("quantile estimators with a fair share that is not a whole number of tokens",
          "[quantile][router]") {
  // N = 5 tokens, E = 2, k = 1: q = 2.5.
  const auto required = torch::tensor({{-0.9F, 0.2F}, {-0.7F, 0.4F}, {-0.3F, 0.7F},
                                       {0.1F, 0.8F}, {0.6F, -0.1F}});
  // Exact: the (floor(q) + 1) = 3rd smallest, -.3 and .4; centred (-.35, .35).
  check_bias(exact_quantile_bias(required, 1), {-0.35, 0.35});
  // Histogram, 4 bins over [-1, 1] (width .5), rank ceil(q) = 3: e0 counts (2, 1, 1, 1) reach
  // 3 in bin 1, (2.5 - 2) / 1 of the way: -.25; e1 (0, 1, 2, 2) in bin 2, (2.5 - 1) / 2: .375.
  // Centred (-.3125, .3125).
  check_bias(histogram_quantile_bias(required, torch::zeros({2}), 1, 4), {-0.3125, 0.3125});
}

TEST_CASE("quantile balancing needs a (k+1)-th expert", "[quantile][router]") {
  CHECK_THROWS_WITH(parse_run_config("", "t.yaml",
                                     {"router.name=quantile", "router.k=4", "model.moe.experts=4"}),
                    Catch::Matchers::Contains("router.k") &&
                        Catch::Matchers::Contains("must be < model.moe.experts = 4"));
  CHECK_THROWS_WITH(parse_run_config("", "t.yaml", {"router.name=quantile", "router.bins=1"}),
                    Catch::Matchers::Contains("router.bins"));
  CHECK_THROWS_WITH(parse_run_config("", "t.yaml", {"router.name=quantile", "router.rate=0"}),
                    Catch::Matchers::Contains("router.rate"));
}

}  // namespace moelab
