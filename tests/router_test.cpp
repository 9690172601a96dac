// Router behaviour: the Sinkhorn solver, hand-computed golden decisions, USMoE causality,
// loss-free bias direction, SSR's draw frequency, BASE's balanced assignment, schedules.
#include <algorithm>
#include <cmath>
#include <map>

#include "harness/model/moe_layer.h"
#include "routers/base.h"
#include "routers/deepseek_v3.h"
#include "routers/expert_choice.h"
#include "routers/hash.h"
#include "routers/loss_free.h"
#include "routers/noisy_topk.h"
#include "routers/quantile.h"
#include "routers/remoe.h"
#include "routers/registry.h"
#include "routers/sinkhorn.h"
#include "routers/stablemoe.h"
#include "routers/smoe_dropout.h"
#include "routers/ssr.h"
#include "routers/topk.h"
#include "routers/topp.h"
#include "routers/usmoe.h"
#include "test_util.h"

namespace moelab {
namespace {

RunConfig config_with(const std::vector<std::string>& overrides) {
  return parse_run_config("", "t.yaml", overrides);
}

template <class R>
std::shared_ptr<R> make(const std::vector<std::string>& overrides, int64_t experts = 4,
                        int64_t dim = 4) {
  RunConfig config = config_with(overrides);
  auto router = make_router(config.router, RouterShape{dim, experts, 0, 0});
  auto typed = std::dynamic_pointer_cast<R>(router);
  REQUIRE(typed != nullptr);
  return typed;
}

RouteContext training_ctx(int64_t step = 1) {
  RouteContext ctx;
  ctx.training = true;
  ctx.step = step;
  return ctx;
}

torch::Tensor loads(const RouteResult& r, int64_t experts) {
  return torch::bincount(r.expert, {}, experts);
}

}  // namespace

TEST_CASE("sinkhorn matches balanced marginals on easy logits", "[sinkhorn]") {
  torch::manual_seed(0);
  auto logits = torch::randn({256, 16});
  SinkhornResult plan = sinkhorn_balanced(logits, SinkhornOptions{200, 1e-5, 5});
  auto pi = torch::exp(logits + plan.f.unsqueeze(1) + plan.g.unsqueeze(0));
  CHECK(torch::allclose(pi.sum(1), torch::ones({256}), 1e-4, 1e-4));
  CHECK(torch::allclose(pi.sum(0), torch::full({16}, 16.0), 1e-3, 1e-3));
  CHECK(plan.error < 1e-5);
  CHECK(plan.iterations < 200);
  CHECK(plan.iterations % 5 == 0);  // convergence is only checked every 5 iterations
  CHECK(plan.converged);
  // A cap far below what the tolerance needs: not converged, and the logged metrics say so.
  SinkhornResult capped = sinkhorn_balanced(logits * 30, SinkhornOptions{5, 1e-9, 5});
  CHECK_FALSE(capped.converged);
  CHECK(capped.iterations == 5);
  std::map<std::string, double> logged;
  for (const auto& [name, value] : sinkhorn_metrics(capped)) logged[name] = value.item<double>();
  CHECK(logged.at("sinkhorn_capped") == 1.0);
  CHECK(logged.at("sinkhorn_iters") == 5.0);
  CHECK(logged.at("sinkhorn_err") == Approx(capped.error));
}

TEST_CASE("sinkhorn honours arbitrary marginals", "[sinkhorn]") {
  torch::manual_seed(1);
  auto logits = torch::randn({6, 3});
  auto rows = torch::tensor({1.0f, 2.0f, 1.0f, 0.5f, 0.5f, 1.0f});  // sum 6
  auto cols = torch::tensor({3.0f, 2.0f, 1.0f});                    // sum 6
  SinkhornResult plan = sinkhorn_log(logits, rows.log(), cols.log(), SinkhornOptions{500, 1e-6, 1});
  auto pi = torch::exp(logits + plan.f.unsqueeze(1) + plan.g.unsqueeze(0));
  CHECK(torch::allclose(pi.sum(1), rows, 1e-4, 1e-5));
  CHECK(torch::allclose(pi.sum(0), cols, 1e-4, 1e-5));
}

TEST_CASE("sinkhorn stays finite on extreme logits and ties", "[sinkhorn]") {
  SECTION("logits with standard deviation 30") {
    torch::manual_seed(2);
    auto logits = torch::randn({512, 8}) * 30 + torch::randn({1, 8}) * 30;
    SinkhornResult plan = sinkhorn_balanced(logits, SinkhornOptions{100, 1e-4, 5});
    CHECK(torch::isfinite(plan.f).all().item<bool>());
    CHECK(torch::isfinite(plan.g).all().item<bool>());
    CHECK(std::isfinite(plan.error));
    CHECK(plan.iterations <= 100);  // the cap holds whatever happens
    auto top1 = (logits + plan.g.unsqueeze(0)).argmax(-1);
    auto counts = torch::bincount(top1, {}, 8).to(torch::kFloat);
    CHECK(counts.max().item<double>() / counts.mean().item<double>() < 1.5);
  }
  SECTION("all-equal logits converge to the uniform plan at once") {
    SinkhornResult plan = sinkhorn_balanced(torch::zeros({32, 4}), SinkhornOptions{100, 1e-6, 1});
    CHECK(plan.iterations == 1);
    CHECK(plan.error < 1e-6);
  }
}

TEST_CASE("usmoe selects the c best unified scores of a group", "[router][usmoe]") {
  auto router = make<UsmoeRouter>({"router.name=usmoe", "router.k=1", "router.beta=0.5",
                                   "router.group=all", "model.moe.experts=2"},
                                  /*experts=*/2);
  // logits [[2, 0], [1, 1]]: S = 0.5*softmax + 0.5*(2/2)*sigmoid.
  auto logits = torch::tensor({{2.0f, 0.0f}, {1.0f, 1.0f}});
  auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  const double p0 = 1.0 / (1.0 + std::exp(-2.0));
  const double s00 = 0.5 * p0 + 0.5 * sig(2), s01 = 0.5 * (1 - p0) + 0.5 * sig(0);
  const double s1 = 0.5 * 0.5 + 0.5 * sig(1);  // both experts of token 1
  REQUIRE(s00 > s1);
  REQUIRE(s1 > s01);
  RouteResult r = router->decide(logits, RouteContext{});
  // c = round(1 * 2) = 2 pairs: (0,0) and one of token 1's tied pairs; token 0 gets 1 expert.
  REQUIRE(r.token.numel() == 2);
  CHECK(testing::as_vector(r.token) == std::vector<int64_t>{0, 1});
  CHECK(r.expert[0].item<int64_t>() == 0);
  CHECK(r.weight[0].item<double>() == Approx(s00));
  CHECK(r.weight[1].item<double>() == Approx(s1));
}

TEST_CASE("usmoe with normalize selects on the raw score and normalises only the gates",
          "[router][usmoe]") {
  // The official code (Training_Free/models/modeling_olmoe.py): top-c of the unified score S
  // over the group's (token, expert) pairs, then gate = S / (token's sum of S over all experts).
  auto router = make<UsmoeRouter>({"router.name=usmoe", "router.k=1", "router.beta=0.5",
                                   "router.group=all", "model.moe.experts=3",
                                   "router.normalize=true"},
                                  /*experts=*/3);
  const std::vector<std::vector<double>> z = {
      {0.5, -0.5, 0.0}, {-1.5, 0.5, 2.5}, {3.0, 3.5, -0.5}, {0.0, 3.5, -3.5}};
  std::vector<std::vector<double>> score(4, std::vector<double>(3));
  std::vector<double> row_sum(4, 0.0);
  for (int t = 0; t < 4; ++t) {
    double norm = 0.0;
    for (double v : z[t]) norm += std::exp(v);
    for (int e = 0; e < 3; ++e) {
      score[t][e] = 0.5 * std::exp(z[t][e]) / norm + 0.5 * (2.0 / 3.0) / (1.0 + std::exp(-z[t][e]));
      row_sum[t] += score[t][e];
    }
  }
  // S = [[.4607 .2190 .3203] [.0687 .2661 .7415] [.5042 .6313 .1315] [.1813 .8085 .0102]]:
  // the c = 4 largest are (3,1) .8085, (1,2) .7415, (2,1) .6313, (2,0) .5042; token 0's best,
  // .4607, is fifth. Normalising first would pick (0,0) (.4607 > .3979 = S[2][0] / 1.2669).
  REQUIRE(score[2][0] > score[0][0]);
  REQUIRE(score[0][0] / row_sum[0] > score[2][0] / row_sum[2]);
  std::vector<float> flat;
  for (const auto& row : z) flat.insert(flat.end(), row.begin(), row.end());
  auto logits = torch::tensor(flat).view({4, 3});
  RouteResult r = router->decide(logits, RouteContext{});
  CHECK(testing::as_vector(r.token) == std::vector<int64_t>{1, 2, 2, 3});
  CHECK(testing::as_vector(r.expert) == std::vector<int64_t>{2, 0, 1, 1});
  const std::vector<std::pair<int, int>> pairs = {{1, 2}, {2, 0}, {2, 1}, {3, 1}};
  for (size_t a = 0; a < pairs.size(); ++a) {
    const auto [t, e] = pairs[a];
    CHECK(r.weight[a].item<double>() == Approx(score[t][e] / row_sum[t]).epsilon(1e-5));
    CHECK(r.priority[a].item<double>() == Approx(score[t][e]).epsilon(1e-5));
  }
  CHECK(r.weight[0].item<double>() == Approx(0.688864).epsilon(1e-5));  // the official output
}

TEST_CASE("usmoe in a causal model never lets a token see later tokens", "[router][usmoe]") {
  auto router = make<UsmoeRouter>({"router.name=usmoe", "router.k=1.5"}, 4);
  const int64_t batch = 4, length = 8, experts = 4;
  torch::manual_seed(3);
  auto logits = torch::randn({batch * length, experts});
  RouteContext ctx = training_ctx();
  ctx.causal = true;
  ctx.group_size = length;
  RouteResult before = router->decide(logits, ctx);
  auto changed = logits.clone();
  changed[length - 1] = torch::tensor({9.0f, -9.0f, 9.0f, -9.0f});  // last token of sequence 0
  RouteResult after = router->decide(changed, ctx);
  auto earlier_of_seq0 = [&](const RouteResult& r) {
    auto mask = r.token < (length - 1);
    return std::make_pair(r.token.masked_select(mask), r.expert.masked_select(mask));
  };
  auto [tokens_before, experts_before] = earlier_of_seq0(before);
  auto [tokens_after, experts_after] = earlier_of_seq0(after);
  CHECK(torch::equal(tokens_before, tokens_after));
  CHECK(torch::equal(experts_before, experts_after));
  CHECK(before.token.numel() == std::llround(1.5 * batch) * length);  // c per position group
}

TEST_CASE("deepseek_v3 with k = 1: the gate is the scaled affinity, so the router learns",
          "[router]") {
  // logits [1, 2, 0], scale 2.5: expert 1, gate 2.5 sigmoid(2); d gate / d z_1 = 2.5 s (1 - s).
  // Normalising one gate would give the constant 2.5 and no gradient.
  const double s = 1.0 / (1.0 + std::exp(-2.0));
  auto router = make<DeepSeekV3Router>({"router.name=deepseek_v3", "router.k=1",
                                        "router.scale=2.5", "router.alpha=0"}, 3);
  auto logits = torch::tensor({{1.0f, 2.0f, 0.0f}}, torch::requires_grad());
  RouteResult r = router->decide(logits, training_ctx());
  REQUIRE(r.expert.numel() == 1);
  CHECK(r.expert[0].item<int64_t>() == 1);
  CHECK(r.weight[0].item<double>() == Approx(2.5 * s));
  r.weight.sum().backward();
  CHECK(logits.grad()[0][1].item<double>() == Approx(2.5 * s * (1 - s)));
  // k = 2 still normalises: the two gates sum to scale.
  auto two = make<DeepSeekV3Router>({"router.name=deepseek_v3", "router.k=2",
                                     "router.scale=2.5", "router.alpha=0"}, 3);
  CHECK(two->decide(torch::tensor({{1.0f, 2.0f, 0.0f}}), training_ctx()).weight.sum().item<double>() ==
        Approx(2.5));
}

TEST_CASE("with k = 1 the gate is the softmax probability, so the router learns", "[router]") {
  // logits [1, 2, 0]: expert 1, gate e^2 / (e^1 + e^2 + e^0); d gate / d z_1 = p (1 - p) > 0.
  const double p = std::exp(2.0) / (std::exp(1.0) + std::exp(2.0) + 1.0);
  auto check_gate = [&](Router& router) {
    auto logits = torch::tensor({{1.0f, 2.0f, 0.0f}}, torch::requires_grad());
    RouteResult r = dynamic_cast<LogitRouter&>(router).decide(logits, training_ctx());
    REQUIRE(r.expert.numel() == 1);
    CHECK(r.expert[0].item<int64_t>() == 1);
    CHECK(r.weight[0].item<double>() == Approx(p));
    r.weight.sum().backward();
    CHECK(logits.grad()[0][1].item<double>() == Approx(p * (1 - p)));
  };
  SECTION("topk, softmax before, renormalize on") {
    check_gate(*make<TopKRouter>({"router.k=1", "router.softmax=before", "router.renormalize=true"}, 3));
  }
  SECTION("loss_free, renormalize on") {
    check_gate(*make<LossFreeRouter>({"router.name=loss_free", "router.k=1"}, 3));
  }
  SECTION("topk, softmax after (a softmax over one logit would be the constant 1)") {
    check_gate(*make<TopKRouter>({"router.k=1", "router.softmax=after"}, 3));
  }
  SECTION("aux_loss (Switch Transformer's top-1)") {
    check_gate(*make<TopKRouter>({"router.name=aux_loss", "router.k=1"}, 3));
  }
  SECTION("noisy_topk without noise (softmax of the one kept score would be 1)") {
    check_gate(*make<NoisyTopKRouter>({"router.name=noisy_topk", "router.k=1", "router.noise=false"}, 3));
  }
  SECTION("ssr's Sinkhorn step: the plan's row share, not the constant 1") {
    auto router = make<SsrRouter>({"router.name=ssr", "router.k=1", "router.p=1"}, 3);
    torch::manual_seed(3);
    auto logits = torch::randn({12, 3}).requires_grad_(true);
    RouteResult r = router->decide(logits, training_ctx());
    REQUIRE(r.weight.numel() == 12);
    CHECK(r.weight.max().item<double>() < 1.0);
    CHECK(r.weight.min().item<double>() > 0.0);
    r.weight.sum().backward();
    CHECK(logits.grad().abs().sum().item<double>() > 0.0);
  }
}

TEST_CASE("expert choice gives every expert the same number of tokens", "[router]") {
  auto router = make<ExpertChoiceRouter>({"router.name=expert_choice", "router.k=1",
                                          "router.group=all"}, 4);
  torch::manual_seed(4);
  auto logits = torch::randn({16, 4}) + torch::tensor({3.0f, 0.0f, 0.0f, 0.0f});
  RouteResult r = router->decide(logits, RouteContext{});
  CHECK(testing::as_vector(loads(r, 4)) == std::vector<int64_t>(4, 4));  // ceil(1*16/4)
  // Expert 3's picks are its 4 highest-probability tokens.
  auto probs = torch::softmax(logits, -1);
  auto best = std::get<0>(std::get<1>(torch::topk(probs.select(1, 3), 4)).sort());
  auto picked = std::get<0>(r.token.masked_select(r.expert == 3).sort());
  CHECK(torch::equal(best, picked));
}

TEST_CASE("loss-free bias moves load away from overloaded experts", "[router]") {
  auto router = make<LossFreeRouter>({"router.name=loss_free", "router.k=1", "router.rate=0.05"}, 4);
  torch::manual_seed(5);
  auto logits = torch::randn({256, 4}) * 0.5 + torch::tensor({1.5f, 0.0f, 0.0f, 0.0f});
  auto initial = loads(router->decide(logits, RouteContext{}), 4);
  REQUIRE(initial[0].item<int64_t>() > 128);  // expert 0 starts overloaded
  for (int step = 1; step <= 60; ++step) {
    router->decide(logits, training_ctx(step));
    router->on_step_end(step);
  }
  CHECK(router->bias()[0].item<double>() < 0);
  CHECK(router->bias()[1].item<double>() > 0);
  auto final_load = loads(router->decide(logits, RouteContext{}), 4);
  CHECK(final_load.max().item<int64_t>() < initial.max().item<int64_t>() / 2);
  // Gates stay the unbiased scores: with k = 1 the chosen expert's softmax probability (not
  // renormalised to the constant 1), whichever expert the bias chose.
  RouteResult r = router->decide(logits, RouteContext{});
  auto unbiased = torch::softmax(logits, -1).index({r.token, r.expert});
  CHECK(r.weight.allclose(unbiased));
}

TEST_CASE("ssr takes the Sinkhorn branch on a fraction p of steps", "[router][ssr]") {
  SsrOptions options;
  options.p = 0.01;
  RouteContext ctx = training_ctx();
  ctx.seed = 7;
  int64_t hits = 0;
  const int64_t steps = 20000;
  for (int64_t step = 1; step <= steps; ++step) {
    ctx.step = step;
    hits += ssr_draw(options, ctx) ? 1 : 0;
  }
  CHECK(hits > 0.008 * steps);
  CHECK(hits < 0.012 * steps);
  ctx.step = 1234;
  const bool first = ssr_draw(options, ctx);
  CHECK(ssr_draw(options, ctx) == first);  // derived from (seed, step): a resume redraws it
  ctx.training = false;
  options.p = 1.0;
  CHECK(!ssr_draw(options, ctx));  // never at evaluation
}

TEST_CASE("ssr's Sinkhorn branch balances a skewed router", "[router][ssr]") {
  torch::manual_seed(6);
  auto logits = torch::randn({512, 8}) + torch::tensor({3.0f, 2.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f});
  auto always = make<SsrRouter>({"router.name=ssr", "router.p=1", "router.k=1",
                                 "model.moe.experts=8"}, 8);
  auto never = make<SsrRouter>({"router.name=ssr", "router.p=0", "router.k=1",
                                "model.moe.experts=8"}, 8);
  auto balanced = loads(always->decide(logits, training_ctx()), 8).to(torch::kFloat);
  auto plain = loads(never->decide(logits, training_ctx()), 8).to(torch::kFloat);
  CHECK(plain.max().item<double>() / plain.mean().item<double>() > 3.0);
  CHECK(balanced.max().item<double>() / balanced.mean().item<double>() < 1.5);
  RouteResult r = always->decide(logits, training_ctx());
  bool has_iters = false;
  for (const auto& [name, value] : r.metrics) has_iters = has_iters || name == "sinkhorn_iters";
  CHECK(has_iters);

  // grad = cost (the default): the Sinkhorn branch's gates carry the router's gradient back
  // to the logits (k = 2: a single gate would be the constant 1); grad = none: they carry none.
  auto trainable = logits.detach().requires_grad_();
  auto with_grad = make<SsrRouter>({"router.name=ssr", "router.p=1", "router.k=2",
                                    "model.moe.experts=8"}, 8);
  RouteResult differentiable = with_grad->decide(trainable, training_ctx());
  REQUIRE(differentiable.weight.requires_grad());
  (differentiable.weight * torch::rand_like(differentiable.weight)).sum().backward();
  CHECK(trainable.grad().abs().sum().item<double>() > 0);
  auto without_grad = make<SsrRouter>({"router.name=ssr", "router.p=1", "router.k=2",
                                       "router.grad=none", "model.moe.experts=8"}, 8);
  CHECK_FALSE(without_grad->decide(trainable, training_ctx()).weight.requires_grad());
}

TEST_CASE("balanced assignment is exact and optimal on a small case", "[router][base]") {
  auto scores = torch::tensor({{5.0f, 4.0f}, {4.9f, 1.0f}, {1.0f, 0.5f}, {3.0f, 2.9f}});
  auto assigned = balanced_assignment(scores, 100);
  CHECK(testing::as_vector(torch::bincount(assigned, {}, 2)) == std::vector<int64_t>{2, 2});
  // Brute force over the 6 balanced assignments.
  double best = -1e9;
  for (int mask = 0; mask < 16; ++mask) {
    if (__builtin_popcount(mask) != 2) continue;
    double total = 0;
    for (int t = 0; t < 4; ++t) total += scores[t][(mask >> t) & 1].item<double>();
    best = std::max(best, total);
  }
  double got = 0;
  for (int t = 0; t < 4; ++t) got += scores[t][assigned[t].item<int64_t>()].item<double>();
  CHECK(got == Approx(best).margin(0.2));  // eps-optimal
  auto uneven = balanced_assignment(torch::randn({10, 3}), 100);
  CHECK(testing::as_vector(torch::bincount(uneven, {}, 3)) == std::vector<int64_t>{4, 3, 3});
}

TEST_CASE("hash routing is a fixed function of the token id", "[router]") {
  RunConfig config = config_with({"router.name=hash", "router.k=2"});
  auto a = make_router(config.router, RouterShape{4, 8, /*seed=*/1, 0});
  auto b = make_router(config.router, RouterShape{4, 8, /*seed=*/1, 0});
  auto c = make_router(config.router, RouterShape{4, 8, /*seed=*/2, 0});
  RouteContext ctx;
  ctx.token_ids = torch::tensor({5, 9, 5, 65536 + 5}, torch::kLong);  // buckets = 65536
  auto x = torch::zeros({4, 4});
  RouteResult ra = a->route(x, ctx), rb = b->route(x, ctx), rc = c->route(x, ctx);
  CHECK(torch::equal(ra.expert, rb.expert));
  CHECK(torch::equal(ra.expert.narrow(0, 0, 2), ra.expert.narrow(0, 4, 2)));  // same id 5
  CHECK(torch::equal(ra.expert.narrow(0, 0, 2), ra.expert.narrow(0, 6, 2)));  // same bucket
  CHECK(!torch::equal(ra.expert, rc.expert));
  CHECK(ra.expert[0].item<int64_t>() != ra.expert[1].item<int64_t>());  // k distinct experts
  CHECK(ra.weight.allclose(torch::full({8}, 0.5)));
}

TEST_CASE("noisy top-k's importance and load losses are the paper's formulas", "[router]") {
  // Shazeer et al. 2017: H = z + eps * sd, gates = softmax over the top-k of H;
  // L_importance = w * CV(sum_t gates)^2; L_load = w * CV(sum_t P)^2 with
  // P_te = Phi((z_te - kth_excluding(H_t, k, e)) / sd). From logits alone sd = softplus(0) + 0.01.
  auto router = make<NoisyTopKRouter>({"router.name=noisy_topk", "router.k=2",
                                       "router.importance_coef=0.1", "router.load_coef=0.2"}, 4);
  const std::vector<std::vector<double>> z = {
      {1.0, 0.5, -0.5, 0.2}, {0.3, 1.2, 0.1, -1.0}, {-0.2, 0.0, 0.9, 0.4}};
  std::vector<float> flat;
  for (const auto& row : z) flat.insert(flat.end(), row.begin(), row.end());
  auto logits = torch::tensor(flat).view({3, 4});
  const RouteContext ctx = training_ctx();
  const auto eps = routing_noise_like(logits, ctx);  // the draw the router makes at this step
  RouteResult r = router->decide(logits, ctx);
  std::map<std::string, double> aux;
  for (const auto& [name, value] : r.aux_losses) aux[name] = value.item<double>();

  const double sd = std::log(2.0) + 0.01;
  auto cv2 = [](const std::vector<double>& v) {
    double mean = 0, var = 0;
    for (double x : v) mean += x / v.size();
    for (double x : v) var += (x - mean) * (x - mean) / v.size();
    return var / (mean * mean);
  };
  auto phi = [](double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); };
  std::vector<double> importance(4, 0.0), load(4, 0.0);
  for (int t = 0; t < 3; ++t) {
    std::vector<double> h(4);
    for (int e = 0; e < 4; ++e) h[e] = z[t][e] + eps[t][e].item<double>() * sd;
    std::vector<double> sorted = h;
    std::sort(sorted.rbegin(), sorted.rend());  // h1 >= h2 >= h3 >= h4
    const double g1 = 1.0 / (1.0 + std::exp(sorted[1] - sorted[0]));
    for (int e = 0; e < 4; ++e) {
      if (h[e] == sorted[0]) importance[e] += g1;
      if (h[e] == sorted[1]) importance[e] += 1.0 - g1;
      // An expert in the top 2 must stay above the 3rd; one outside must beat the 2nd.
      const double threshold = h[e] > sorted[2] ? sorted[2] : sorted[1];
      load[e] += phi((z[t][e] - threshold) / sd);
    }
  }
  CHECK(aux.at("importance") == Approx(0.1 * cv2(importance)).epsilon(1e-4));
  CHECK(aux.at("load") == Approx(0.2 * cv2(load)).epsilon(1e-4));
}

TEST_CASE("ssr's Sinkhorn-step gates are the transport plan renormalised over the chosen experts",
          "[router][ssr]") {
  // Plan pi = diag(u) exp(C / xi) diag(v), rows summing to 1 and columns to T/E, C =
  // softmax(z); each token takes the k largest entries of its row, gates = those entries / their
  // sum. Solved here by plain alternating scaling in double precision.
  auto router = make<SsrRouter>({"router.name=ssr", "router.k=2", "router.p=1", "router.xi=0.5"}, 4);
  torch::manual_seed(9);
  auto logits = torch::randn({16, 4});
  const int T = 16, E = 4;
  std::vector<std::vector<double>> kernel(T, std::vector<double>(E));
  for (int t = 0; t < T; ++t) {
    double norm = 0;
    for (int e = 0; e < E; ++e) norm += std::exp(logits[t][e].item<double>());
    for (int e = 0; e < E; ++e) kernel[t][e] = std::exp(std::exp(logits[t][e].item<double>()) / norm / 0.5);
  }
  std::vector<double> u(T, 1.0), v(E, 1.0);
  for (int iteration = 0; iteration < 5000; ++iteration) {
    for (int t = 0; t < T; ++t) {
      double row = 0;
      for (int e = 0; e < E; ++e) row += kernel[t][e] * v[e];
      u[t] = 1.0 / row;
    }
    for (int e = 0; e < E; ++e) {
      double column = 0;
      for (int t = 0; t < T; ++t) column += u[t] * kernel[t][e];
      v[e] = (static_cast<double>(T) / E) / column;
    }
  }
  RouteResult r = router->decide(logits, training_ctx());
  REQUIRE(r.token.numel() == 2 * T);
  for (int64_t a = 0; a < r.token.numel(); a += 2) {
    const int64_t t = r.token[a].item<int64_t>();
    std::vector<std::pair<double, int>> row;
    for (int e = 0; e < E; ++e) row.emplace_back(u[t] * kernel[t][e] * v[e], e);
    std::sort(row.rbegin(), row.rend());
    const double chosen = row[0].first + row[1].first;
    std::map<int64_t, double> expected = {{row[0].second, row[0].first / chosen},
                                          {row[1].second, row[1].first / chosen}};
    for (int64_t j = a; j < a + 2; ++j) {
      INFO("token " << t << " expert " << r.expert[j].item<int64_t>());
      REQUIRE(expected.count(r.expert[j].item<int64_t>()) == 1);
      CHECK(r.weight[j].item<double>() == Approx(expected.at(r.expert[j].item<int64_t>())).epsilon(1e-3));
    }
  }
}

TEST_CASE("smoe_dropout raises k linearly and keeps its router frozen", "[router]") {
  auto router = make<SmoeDropoutRouter>({"router.name=smoe_dropout", "router.ramp_steps=100",
                                         "model.moe.experts=8"}, 8);
  CHECK(router->k_at(training_ctx(0)) == 4);
  CHECK(router->k_at(training_ctx(50)) == 6);
  CHECK(router->k_at(training_ctx(100)) == 8);
  CHECK(router->k_at(training_ctx(1000)) == 8);
  CHECK(router->k_at(RouteContext{}) == 8);
  for (const auto& p : router->parameters()) CHECK(!p.requires_grad());
}

TEST_CASE("noisy top-k adds noise in training only", "[router]") {
  auto router = make<NoisyTopKRouter>({"router.name=noisy_topk", "router.k=1"}, 4);
  auto logits = torch::tensor({{0.1f, 0.3f, 0.2f, 0.0f}, {2.0f, 0.0f, 0.0f, 0.1f}});
  CHECK(testing::as_vector(router->decide(logits, RouteContext{}).expert) ==
        std::vector<int64_t>{1, 0});
  int64_t changed = 0;
  for (int64_t step = 1; step <= 50; ++step) {  // a fresh draw of the noise stream per step
    changed += router->decide(logits, training_ctx(step)).expert[0].item<int64_t>() != 1;
  }
  CHECK(changed > 0);  // noise of scale softplus(0) ~ 0.69 flips close calls
  CHECK(changed < 50);
}

TEST_CASE("soft MoE: dispatch and combine are the paper's softmaxes of X Phi, the output their slot mixture",
          "[router][moe]") {
  RunConfig config = config_with({"router.name=soft_moe", "model.moe.experts=2",
                                  "model.moe.expert_hidden=3"});
  auto router = make_router(config.router, RouterShape{4, 2, 0, 0});
  MoELayer layer(4, config.model.moe, router);
  torch::manual_seed(9);
  auto x = torch::randn({6, 4});  // 2 images of 3 tokens
  RouteContext ctx;
  ctx.group_size = 3;
  ctx.collect_metrics = true;
  auto y = layer(x, ctx);
  RouteResult r = router->route(x, ctx);
  auto params = layer->named_parameters();
  // The router's weights are the paper's, computed here element by element: logits = X Phi
  // per group; dispatch = softmax over the group's tokens (per slot), combine = softmax over
  // the slots (per token).
  auto phi = params["router.slot_params"].to(torch::kDouble);  // [D, E*S]
  auto xs = x.to(torch::kDouble);
  for (int64_t g = 0; g < 2; ++g) {
    double logit[3][2];
    for (int64_t t = 0; t < 3; ++t) {
      for (int64_t s = 0; s < 2; ++s) {
        logit[t][s] = 0.0;
        for (int64_t d = 0; d < 4; ++d) {
          logit[t][s] += xs[3 * g + t][d].item<double>() * phi[d][s].item<double>();
        }
      }
    }
    for (int64_t t = 0; t < 3; ++t) {
      for (int64_t s = 0; s < 2; ++s) {
        double over_tokens = 0.0, over_slots = 0.0;
        for (int64_t u = 0; u < 3; ++u) over_tokens += std::exp(logit[u][s]);
        for (int64_t v = 0; v < 2; ++v) over_slots += std::exp(logit[t][v]);
        INFO("group " << g << " token " << t << " slot " << s);
        CHECK(r.soft_dispatch[g][t][s].item<double>() ==
              Approx(std::exp(logit[t][s]) / over_tokens).epsilon(1e-5));
        CHECK(r.soft_combine[g][t][s].item<double>() ==
              Approx(std::exp(logit[t][s]) / over_slots).epsilon(1e-5));
      }
    }
  }
  auto ffn = [&](int64_t e, const torch::Tensor& v) {
    auto h = torch::gelu(torch::matmul(v, params["w_in"][e]) + params["b_in"][e]);
    return torch::matmul(h, params["w_out"][e]) + params["b_out"][e];
  };
  auto expected = torch::zeros_like(x);
  for (int64_t g = 0; g < 2; ++g) {
    auto tokens = x.narrow(0, 3 * g, 3);                               // [3, D]
    auto slot_in = torch::matmul(r.soft_dispatch[g].t(), tokens);      // [2, D] (1 slot each)
    auto slot_out = torch::stack({ffn(0, slot_in[0]), ffn(1, slot_in[1])});
    expected.narrow(0, 3 * g, 3).copy_(torch::matmul(r.soft_combine[g], slot_out));
  }
  CHECK(torch::allclose(y, expected, 1e-5, 1e-6));
  ctx.causal = true;
  CHECK_THROWS_WITH(router->route(x, ctx), Catch::Matchers::Contains("causal"));
}

}  // namespace moelab

namespace moelab {

TEST_CASE("aux_loss adds the Switch balance loss and the z-loss with their weights", "[router]") {
  RunConfig config = parse_run_config("", "t.yaml", {"router.name=aux_loss", "router.k=1",
                                                     "model.moe.experts=2"});
  auto router = std::dynamic_pointer_cast<LogitRouter>(
      make_router(config.router, RouterShape{2, 2, 0, 0}));
  auto logits = torch::tensor({{1.0f, 0.0f}, {2.0f, 0.0f}, {0.0f, 1.0f}});
  RouteResult r = router->decide(logits, RouteContext{});
  std::map<std::string, double> aux;
  for (const auto& [name, value] : r.aux_losses) aux[name] = value.item<double>();
  // f = (2/3, 1/3); P = mean softmax rows.
  const double p1 = 1 / (1 + std::exp(-1.0)), p2 = 1 / (1 + std::exp(-2.0));
  const double P0 = (p1 + p2 + (1 - p1)) / 3, P1 = 1 - P0;
  CHECK(aux.at("balance") == Approx(0.01 * 2 * (2.0 / 3 * P0 + 1.0 / 3 * P1)));
  auto lse = [](double a, double b) { return std::log(std::exp(a) + std::exp(b)); };
  const double z = (std::pow(lse(1, 0), 2) + std::pow(lse(2, 0), 2) + std::pow(lse(0, 1), 2)) / 3;
  CHECK(aux.at("z") == Approx(0.001 * z));
}

TEST_CASE("sbase balances in training and routes by activation at evaluation", "[router]") {
  auto router = make<LogitRouter>({"router.name=sbase", "router.k=1", "model.moe.experts=4"}, 4);
  torch::manual_seed(10);
  auto logits = torch::randn({64, 4}) + torch::tensor({4.0f, 0.0f, 0.0f, 0.0f});
  RouteResult train = router->decide(logits, training_ctx());
  auto train_load = loads(train, 4).to(torch::kFloat);
  CHECK(train_load.max().item<double>() / train_load.mean().item<double>() < 1.3);
  CHECK(train.weight.allclose(torch::sigmoid(logits).gather(1, train.expert.view({-1, 1})).view(-1)));
  RouteResult eval = router->decide(logits, RouteContext{});
  CHECK(torch::equal(eval.expert, logits.argmax(-1)));
}

TEST_CASE("stablemoe freezes its distilled routing after stage 1", "[router]") {
  RunConfig config = parse_run_config("", "t.yaml", {"router.name=stablemoe", "router.stage1_steps=2"});
  auto router = make_router(config.router, RouterShape{8, 8, 0, 0});
  auto stable = std::dynamic_pointer_cast<StableMoeRouter>(router);
  REQUIRE(stable);
  auto x = torch::randn({32, 8});
  auto has_distill = [&](const RouteResult& r) {
    for (const auto& [name, value] : r.aux_losses) if (name == "distill") return true;
    return false;
  };
  CHECK(stable->in_stage1());
  CHECK(has_distill(router->route(x, training_ctx(1))));
  router->on_step_end(1);
  router->on_step_end(2);
  CHECK(!stable->in_stage1());
  RouteResult frozen = router->route(x, training_ctx(3));
  CHECK(!has_distill(frozen));
  // Stage 2 decides by the distilled router: changing the centroids changes no choice.
  {
    torch::NoGradGuard no_grad;
    router->named_parameters()["centroids"].normal_();
  }
  CHECK(torch::equal(router->route(x, training_ctx(4)).expert, frozen.expert));
}

TEST_CASE("xmoe keeps its expert embeddings at the configured norm", "[router]") {
  RunConfig config = parse_run_config("", "t.yaml", {"router.name=xmoe", "router.embedding_norm=1.5"});
  auto router = make_router(config.router, RouterShape{8, 8, 0, 0});
  router->route(torch::randn({16, 8}), training_ctx());
  auto norms = router->named_parameters()["expert_embeddings"].norm(2, -1);
  CHECK(norms.allclose(torch::full({8}, 1.5)));
}

}  // namespace moelab

namespace moelab {
namespace {

double logit_of(double s) { return std::log(s / (1.0 - s)); }

// Logits whose sigmoids are `scores` [T][E].
torch::Tensor logits_for_sigmoid(const std::vector<std::vector<double>>& scores) {
  std::vector<double> flat;
  for (const auto& row : scores) {
    for (double s : row) flat.push_back(logit_of(s));
  }
  return torch::tensor(flat, torch::kFloat).view({static_cast<int64_t>(scores.size()), -1});
}

std::vector<std::pair<int64_t, int64_t>> pairs_of(const RouteResult& r) {
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t i = 0; i < r.token.numel(); ++i) {
    pairs.emplace_back(r.token[i].item<int64_t>(), r.expert[i].item<int64_t>());
  }
  return pairs;
}

}  // namespace

TEST_CASE("topp takes experts until their probability mass reaches p", "[router][topp]") {
  // Probabilities per token (logits = their logs): experts in order of probability until the
  // mass before the next one reaches p = 0.7. Token 1's tie (0.1, 0.1) ranks by index.
  const double probs[3][4] = {{0.5, 0.3, 0.15, 0.05}, {0.1, 0.2, 0.6, 0.1}, {0.25, 0.25, 0.25, 0.25}};
  std::vector<float> flat;
  for (const auto& row : probs) {
    for (double p : row) flat.push_back(static_cast<float>(std::log(p)));
  }
  const auto logits = torch::tensor(flat).view({3, 4});
  using Pairs = std::vector<std::pair<int64_t, int64_t>>;
  auto router = make<TopPRouter>({"router.name=topp", "router.p=0.7", "router.entropy_coef=0.01",
                                  "router.aux_coef=0"});
  RouteResult r = router->decide(logits, training_ctx());
  CHECK(pairs_of(r) == Pairs{{0, 0}, {0, 1}, {1, 1}, {1, 2}, {2, 0}, {2, 1}, {2, 2}});
  // Gates: the chosen probabilities themselves (not renormalised).
  const std::vector<double> gates = {0.5, 0.3, 0.2, 0.6, 0.25, 0.25, 0.25};
  for (size_t i = 0; i < gates.size(); ++i) CHECK(r.weight[i].item<double>() == Approx(gates[i]));
  // The dynamic loss: 0.01 x the mean entropy of the three rows.
  double entropy = 0.0;
  for (const auto& row : probs) {
    for (double p : row) entropy -= p * std::log(p) / 3.0;
  }
  REQUIRE(r.aux_losses.size() == 1);
  CHECK(r.aux_losses[0].first == "entropy");
  CHECK(r.aux_losses[0].second.item<double>() == Approx(0.01 * entropy));
  std::map<std::string, double> metrics;
  for (const auto& [name, value] : r.metrics) metrics[name] = value.item<double>();
  CHECK(metrics.at("k_mean") == Approx(7.0 / 3.0));
  // max_k caps the uniform token at 2; min_k = 3 gives every token at least 3.
  auto capped = make<TopPRouter>({"router.name=topp", "router.p=0.7", "router.max_k=2"});
  CHECK(pairs_of(capped->decide(logits, training_ctx())) ==
        Pairs{{0, 0}, {0, 1}, {1, 1}, {1, 2}, {2, 0}, {2, 1}});
  auto floor = make<TopPRouter>({"router.name=topp", "router.p=0.7", "router.min_k=3"});
  CHECK(pairs_of(floor->decide(logits, training_ctx())) ==
        Pairs{{0, 0}, {0, 1}, {0, 2}, {1, 0}, {1, 1}, {1, 2}, {2, 0}, {2, 1}, {2, 2}});
  // renormalize: token 0's gates 0.5 / 0.8 and 0.3 / 0.8.
  auto renormalised = make<TopPRouter>({"router.name=topp", "router.p=0.7", "router.renormalize=true"});
  RouteResult rn = renormalised->decide(logits, training_ctx());
  CHECK(rn.weight[0].item<double>() == Approx(0.5 / 0.8));
  CHECK(rn.weight[1].item<double>() == Approx(0.3 / 0.8));
  // Bad options name their key.
  CHECK_THROWS_WITH(config_with({"router.name=topp", "router.p=0"}), Catch::Matchers::Contains("router.p"));
  CHECK_THROWS_WITH(config_with({"router.name=topp", "router.p=1.5"}), Catch::Matchers::Contains("router.p"));
  CHECK_THROWS_WITH(config_with({"router.name=topp", "router.min_k=9"}), Catch::Matchers::Contains("router.min_k"));
  CHECK_THROWS_WITH(config_with({"router.name=topp", "router.min_k=3", "router.max_k=2"}),
                    Catch::Matchers::Contains("router.max_k"));
}

TEST_CASE("deepseek_v3 gates, bias update, group-limited choice and sequence-wise loss",
          "[router][deepseek_v3]") {
  using Pairs = std::vector<std::pair<int64_t, int64_t>>;
  const std::vector<std::vector<double>> scores = {
      {0.9, 0.1, 0.8, 0.7}, {0.2, 0.6, 0.3, 0.5}, {0.4, 0.45, 0.1, 0.2}, {0.7, 0.3, 0.6, 0.2}};
  const auto logits = logits_for_sigmoid(scores);
  auto router = make<DeepSeekV3Router>({"router.name=deepseek_v3", "router.k=2", "router.scale=2.5",
                                        "router.alpha=0.5", "router.gamma=0.01"});
  RouteContext ctx = training_ctx();
  ctx.group_size = 2;  // two sequences of two tokens
  RouteResult r = router->decide(logits, ctx);
  // Top 2 of the sigmoid scores per token, best first; gates = the two scores normalised,
  // times 2.5.
  const Pairs chosen = {{0, 0}, {0, 2}, {1, 1}, {1, 3}, {2, 1}, {2, 0}, {3, 0}, {3, 2}};
  CHECK(pairs_of(r) == chosen);
  for (size_t i = 0; i < chosen.size(); ++i) {
    const auto [t, e] = chosen[i];
    const auto [t2, other] = chosen[i % 2 == 0 ? i + 1 : i - 1];
    INFO("token " << t << " expert " << e);
    CHECK(r.weight[i].item<double>() ==
          Approx(2.5 * scores[t][e] / (scores[t][e] + scores[t2][other])).epsilon(1e-5));
  }
  // The sequence-wise loss, by hand: per sequence s, f_e = E / (k L) x (its tokens choosing e),
  // P_e = mean over its tokens of s_te / sum_j s_tj; alpha x the mean over sequences of
  // sum_e f_e P_e.
  double loss = 0.0;
  for (int s = 0; s < 2; ++s) {
    double f[4] = {0, 0, 0, 0}, p[4] = {0, 0, 0, 0};
    for (int t = 2 * s; t < 2 * s + 2; ++t) {
      double row = 0.0;
      for (double v : scores[t]) row += v;
      for (int e = 0; e < 4; ++e) p[e] += scores[t][e] / row / 2.0;
    }
    for (const auto& [t, e] : chosen) {
      if (t / 2 == s) f[e] += 4.0 / (2.0 * 2.0);
    }
    for (int e = 0; e < 4; ++e) loss += f[e] * p[e] / 2.0;
  }
  REQUIRE(r.aux_losses.size() == 1);
  CHECK(r.aux_losses[0].first == "seq_balance");
  CHECK(r.aux_losses[0].second.item<double>() == Approx(0.5 * loss).epsilon(1e-5));
  // After the step, the loads (3, 2, 2, 1) move the bias by 0.01 x sign(2 - load).
  router->on_step_end(1);
  const double moved[] = {-0.01, 0.0, 0.0, 0.01};
  for (int e = 0; e < 4; ++e) CHECK(router->bias()[e].item<double>() == Approx(moved[e]).margin(1e-9));
  // Group-limited: groups {0, 1} and {2, 3}; token 0's group scores 0.9 + 0.1 and 0.8 + 0.7,
  // so it chooses inside the second group (experts 2 and 3, not 0 and 2).
  auto grouped = make<DeepSeekV3Router>({"router.name=deepseek_v3", "router.k=2", "router.groups=2",
                                         "router.topk_groups=1", "router.alpha=0"});
  RouteResult g = grouped->decide(logits.narrow(0, 0, 1), training_ctx());
  CHECK(pairs_of(g) == Pairs{{0, 2}, {0, 3}});
  CHECK_THROWS_WITH(config_with({"router.name=deepseek_v3", "router.groups=3"}),
                    Catch::Matchers::Contains("router.groups"));
  CHECK_THROWS_WITH(config_with({"router.name=deepseek_v3", "router.groups=2", "router.topk_groups=3"}),
                    Catch::Matchers::Contains("router.topk_groups"));
  CHECK_THROWS_WITH(config_with({"router.name=deepseek_v3", "router.k=3", "router.groups=4",
                                 "router.topk_groups=1", "model.moe.experts=8"}),
                    Catch::Matchers::Contains("router.k"));
}

TEST_CASE("remoe routes by ReLU gates and adapts its L1 coefficient to the target sparsity",
          "[router][remoe]") {
  const auto logits = torch::tensor({{1.0F, -1.0F, 0.5F, 2.0F},
                                     {-0.5F, 0.25F, -2.0F, 1.5F},
                                     {0.75F, 0.5F, 0.25F, -1.0F}});
  auto router = make<RemoeRouter>({"router.name=remoe", "router.k=2", "router.lambda_init=0.1",
                                   "router.alpha=2"});
  RouteResult r = router->decide(logits, training_ctx());
  using Pairs = std::vector<std::pair<int64_t, int64_t>>;
  CHECK(pairs_of(r) == Pairs{{0, 0}, {0, 2}, {0, 3}, {1, 1}, {1, 3}, {2, 0}, {2, 1}, {2, 2}});
  const std::vector<double> gates = {1.0, 0.5, 2.0, 0.25, 1.5, 0.75, 0.5, 0.25};
  for (size_t i = 0; i < gates.size(); ++i) CHECK(r.weight[i].item<double>() == Approx(gates[i]));
  // L1 with load weights f_e = E / (k T) x (tokens using e) = 4/6 x (2, 2, 2, 2):
  // 0.1 x (1/3) x sum_t sum_e f_e g_te.
  double penalty = 0.0;
  for (double g : gates) penalty += (4.0 / 6.0) * 2.0 * g;
  REQUIRE(r.aux_losses.size() == 1);
  CHECK(r.aux_losses[0].second.item<double>() == Approx(0.1 * penalty / 3.0));
  // 8 of 12 gates active: sparsity 1/3 under the target 1 - 2/4, so lambda doubles...
  router->on_step_end(1);
  CHECK(router->l1_coef() == Approx(0.2));
  // ... and a step with 2 active gates of 12 (sparser than the target) halves it.
  router->decide(-logits.abs() + torch::tensor({{0.0F, 0.0F, 0.0F, 0.0F}, {0.0F, 0.0F, 0.0F, 3.0F},
                                                {3.0F, 0.0F, 0.0F, 0.0F}}),
                 training_ctx(2));
  router->on_step_end(2);
  CHECK(router->l1_coef() == Approx(0.1));
  CHECK_THROWS_WITH(config_with({"router.name=remoe", "router.alpha=1"}),
                    Catch::Matchers::Contains("router.alpha"));
}

TEST_CASE("the balance loss counts frequencies per micro-batch, over the step, or per sequence",
          "[router][aux_scope]") {
  // Two experts, k = 1, aux_coef 1: the loss is 2 x sum_e f_e P_e. Rows are probabilities
  // (0.75, 0.25) or (0.25, 0.75) (logits ln 3 and 0).
  const float big = std::log(3.0F);
  const auto first = torch::tensor({{big, 0.0F}, {big, 0.0F}});    // both tokens to expert 0
  const auto second = torch::tensor({{0.0F, big}, {0.0F, big}});   // both to expert 1
  auto router = make<TopKRouter>({"router.name=aux_loss", "router.k=1", "router.aux_coef=1",
                                  "router.z_coef=0"}, 2);
  auto balance = [](const RouteResult& r) {
    REQUIRE(r.aux_losses.size() == 1);
    return r.aux_losses[0].second.item<double>();
  };
  RouteContext ctx = training_ctx();
  // Per micro-batch: f = (1, 0), P = (0.75, 0.25) -> 1.5; then f = (0, 1), P = (0.25, 0.75) -> 1.5.
  CHECK(balance(router->decide(first, ctx)) == Approx(1.5));
  CHECK(balance(router->decide(second, ctx)) == Approx(1.5));
  // Over the step: the second micro-batch's f counts both, (2, 2) / 4: 2 x (0.5 x 0.25 +
  // 0.5 x 0.75) = 1.
  StepCounts counts;
  ctx.balance_scope = BalanceScope::GlobalBatch;
  ctx.step_counts = &counts;
  CHECK(balance(router->decide(first, ctx)) == Approx(1.5));
  CHECK(balance(router->decide(second, ctx)) == Approx(1.0));
  CHECK(counts.at(0).equal(torch::tensor({2.0F, 2.0F})));
  // Per sequence of 2: (expert 0, expert 1) gives f = P = (0.5, 0.5) -> 1; (0, 0) gives
  // f = (1, 0), P = (0.75, 0.25) -> 1.5; the mean is 1.25 (over the whole micro-batch,
  // f = (0.75, 0.25), P = (0.625, 0.375): 1.125).
  const auto mixed = torch::tensor({{big, 0.0F}, {0.0F, big}, {big, 0.0F}, {big, 0.0F}});
  RouteContext sequences = training_ctx();
  sequences.group_size = 2;
  CHECK(balance(router->decide(mixed, sequences)) == Approx(1.125));
  sequences.balance_scope = BalanceScope::Sequence;
  CHECK(balance(router->decide(mixed, sequences)) == Approx(1.25));
}

TEST_CASE("ortho_coef adds SimBal's ||W W^T - I||_1 on the gate to the token-choice routers",
          "[router][ortho]") {
  for (const char* name : {"topk", "noisy_topk", "loss_free", "ssr", "quantile", "deepseek_v3",
                           "topp", "remoe"}) {
    INFO(name);
    RunConfig config = config_with({std::string("router.name=") + name, "router.ortho_coef=0.5",
                                    name == std::string("topp") ? "router.max_k=1" : "router.k=1",
                                    "model.moe.experts=2"});
    auto router = std::dynamic_pointer_cast<LogitRouter>(
        make_router(config.router, RouterShape{2, 2, 0, 0}));
    REQUIRE(router != nullptr);
    {
      torch::NoGradGuard no_grad;
      router->gate()->weight.copy_(torch::tensor({{1.0F, 0.0F}, {1.0F, 1.0F}}));
    }
    // W W^T = ((1, 1), (1, 2)); minus I: ((0, 1), (1, 1)), absolute sum 3, times 0.5.
    RouteResult r = router->route(torch::randn({6, 2}), training_ctx());
    torch::Tensor ortho;
    for (const auto& [loss_name, loss] : r.aux_losses) {
      if (loss_name == "ortho") ortho = loss;
    }
    REQUIRE(ortho.defined());
    CHECK(ortho.item<double>() == Approx(1.5));
    ortho.backward();
    // d/dW of 0.5 sum |W W^T - I| = 0.5 x 2 S W with S = sign(W W^T - I) = ((0, 1), (1, 1)):
    // S W = ((1, 1), (2, 1)).
    CHECK(router->gate()->weight.grad().allclose(torch::tensor({{1.0F, 1.0F}, {2.0F, 1.0F}})));
  }
  // Off by default (and out of the run identity while off: config_test pins the default hash).
  auto plain = make<TopKRouter>({"router.name=topk"});
  for (const auto& [loss_name, loss] : plain->route(torch::randn({4, 4}), training_ctx()).aux_losses) {
    CHECK(loss_name != "ortho");
  }
}

}  // namespace moelab
