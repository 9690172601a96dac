// MoE layer: permutation dispatch equals a per-token reference, capacity and drop policies,
// dropped tokens counted, shared metrics.
#include "harness/model/moe_layer.h"


#include "routers/registry.h"
#include "test_util.h"

namespace moelab {
namespace {

// A fixed decision for tests: the assignments are given, not computed.
class FixedRouter : public Router {
 public:
  explicit FixedRouter(RouteResult result) : result_(std::move(result)) {}
  RouteResult route(const torch::Tensor&, const RouteContext&) override { return result_; }

 private:
  RouteResult result_;
};

RouteResult assignments(std::vector<int64_t> token, std::vector<int64_t> expert,
                        std::vector<float> weight) {
  RouteResult r;
  r.token = torch::tensor(token, torch::kLong);
  r.expert = torch::tensor(expert, torch::kLong);
  r.weight = torch::tensor(weight);
  r.priority = r.weight.clone();
  return r;
}

}  // namespace

TEST_CASE("dispatch keeps every assignment, grouped by expert, when dropless", "[moe]") {
  auto route = assignments({0, 0, 1, 1, 2, 2}, {2, 0, 2, 1, 0, 2}, {.5, .5, .6, .4, .7, .3});
  Dispatch d = plan_dispatch(route, 3, /*capacity_factor=*/0.0, "probs");
  CHECK(testing::as_vector(d.expert) == std::vector<int64_t>{0, 0, 1, 2, 2, 2});
  CHECK(testing::as_vector(d.token) == std::vector<int64_t>{0, 2, 1, 0, 1, 2});
  CHECK(d.kept_per_expert == std::vector<int64_t>{2, 1, 3});
  CHECK(testing::as_vector(d.requested) == std::vector<int64_t>{2, 1, 3});
}

TEST_CASE("capacity drops by priority or by position", "[moe]") {
  // Expert 0 is asked by tokens 0..3 with priorities .1 .9 .5 .7; capacity = ceil(1*4/2) = 2.
  auto route = assignments({0, 1, 2, 3}, {0, 0, 0, 0}, {.1f, .9f, .5f, .7f});
  SECTION("probs keeps the highest-priority assignments") {
    Dispatch d = plan_dispatch(route, 2, 1.0, "probs");
    CHECK(testing::as_vector(d.token) == std::vector<int64_t>{1, 3});
    CHECK(d.kept_per_expert == std::vector<int64_t>{2, 0});
  }
  SECTION("position keeps the earliest tokens") {
    Dispatch d = plan_dispatch(route, 2, 1.0, "position");
    CHECK(testing::as_vector(d.token) == std::vector<int64_t>{0, 1});
  }
}

TEST_CASE("the MoE layer equals a per-token reference computation, gradients too", "[moe]") {
  torch::manual_seed(1);
  MoeConfig config;
  config.experts = 4;  // expert 3 gets no token
  config.expert_hidden = 5;
  auto route = assignments({0, 0, 1, 2, 3}, {2, 0, 1, 2, 0}, {.25, .75, 1.0, .5, .3});
  MoELayer layer(4, config, std::make_shared<FixedRouter>(route));
  auto x = torch::randn({5, 4}, torch::requires_grad());  // token 4 gets no expert
  RoutingRecord record;
  RouteContext ctx;
  ctx.collect_metrics = true;
  ctx.record = &record;
  auto y = layer(x, ctx);

  auto params = layer->named_parameters();
  auto w_in = params["w_in"], b_in = params["b_in"], w_out = params["w_out"], b_out = params["b_out"];
  auto expected = torch::zeros_like(x);
  for (int64_t a = 0; a < route.token.numel(); ++a) {
    const int64_t t = route.token[a].item<int64_t>(), e = route.expert[a].item<int64_t>();
    auto h = torch::gelu(torch::matmul(x[t], w_in[e]) + b_in[e]);
    expected[t] += route.weight[a] * (torch::matmul(h, w_out[e]) + b_out[e]);
  }
  CHECK(torch::allclose(y, expected, 1e-5, 1e-6));
  CHECK(y[4].abs().sum().item<double>() == 0.0);  // unrouted token: residual only

  auto gradients = [&](const torch::Tensor& out) {
    for (auto& p : layer->parameters()) p.mutable_grad() = torch::Tensor();
    x.mutable_grad() = torch::Tensor();
    out.pow(2).sum().backward(/*gradient=*/{}, /*retain_graph=*/true);
    std::vector<torch::Tensor> grads{x.grad().clone()};
    for (const auto& name : {"w_in", "b_in", "w_out", "b_out"}) grads.push_back(params[name].grad().clone());
    return grads;
  };
  auto layer_grads = gradients(y), reference_grads = gradients(expected);
  for (size_t i = 0; i < layer_grads.size(); ++i) {
    INFO("gradient " << i << " (x, w_in, b_in, w_out, b_out)");
    CHECK(torch::allclose(layer_grads[i], reference_grads[i], 1e-5, 1e-6));
  }
  CHECK(params["w_in"].grad()[3].abs().sum().item<double>() == 0.0);  // idle expert

  std::map<std::string, double> m;
  REQUIRE(record.layer_metrics.size() == 1);
  for (const auto& [name, value] : record.layer_metrics[0].second) m[name] = value.item<double>();
  CHECK(m.at("unrouted_frac") == Approx(0.2));
  CHECK(m.at("dropped_frac") == Approx(0.0));
  CHECK(m.at("load_max_over_mean") == Approx(2.0 / (5.0 / 4.0)));
  CHECK(m.at("load_min_over_mean") == Approx(0.0));
  CHECK(m.at("dead_experts") == 1.0);
  CHECK(m.at("load_e1") == Approx(0.2));
}

TEST_CASE("dropped assignments are counted and dead experts found", "[moe]") {
  MoeConfig config;
  config.experts = 4;
  config.expert_hidden = 3;
  config.capacity_factor = 1.0;  // capacity = ceil(4/4) = 1 per expert
  auto route = assignments({0, 1, 2, 3}, {1, 1, 1, 2}, {.5, .6, .7, .8});
  MoELayer layer(2, config, std::make_shared<FixedRouter>(route));
  RoutingRecord record;
  RouteContext ctx;
  ctx.collect_metrics = true;
  ctx.record = &record;
  layer(torch::randn({4, 2}), ctx);
  std::map<std::string, double> m;
  for (const auto& [name, value] : record.layer_metrics.at(0).second) m[name] = value.item<double>();
  CHECK(m.at("dropped_frac") == Approx(0.5));
  CHECK(m.at("unrouted_frac") == Approx(0.5));
  CHECK(m.at("dead_experts") == 2.0);
  // Expert 1 was asked for 3 assignments against a capacity of 1.
  CHECK(m.at("overload_factor") == Approx(3.0));
  CHECK(m.count("dead_interval") == 0);  // an evaluation forward has no training window
}

TEST_CASE("dead_interval counts experts under 1 % of their share since the last logging step",
          "[moe]") {
  MoeConfig config;
  config.experts = 4;
  config.expert_hidden = 3;
  // Each forward: expert 0 gets 3 assignments, expert 1 one; experts 2 and 3 nothing.
  auto route = assignments({0, 1, 2, 3}, {0, 0, 0, 1}, {1, 1, 1, 1});
  MoELayer layer(2, config, std::make_shared<FixedRouter>(route));
  RouteContext ctx;
  ctx.training = true;
  for (int i = 0; i < 3; ++i) layer(torch::randn({4, 2}), ctx);  // not logging steps
  auto other = assignments({0}, {2}, {1});  // once, expert 2: 1 of 13 assignments, not dead
  layer->swap_router(std::make_shared<FixedRouter>(other));
  layer(torch::randn({4, 2}), ctx);
  layer->swap_router(std::make_shared<FixedRouter>(route));
  RoutingRecord record;
  ctx.collect_metrics = true;
  ctx.record = &record;
  layer(torch::randn({4, 2}), ctx);  // a logging step: 17 assignments, expert 3 none
  std::map<std::string, double> m;
  for (const auto& [name, value] : record.layer_metrics.at(0).second) m[name] = value.item<double>();
  CHECK(m.at("dead_interval") == 1.0);
  CHECK(m.at("dead_experts") == 2.0);  // this forward alone: experts 2 and 3
  CHECK(m.at("overload_factor") == Approx(3.0));  // dropless: 3 over the mean load 1
  // The window starts again: the next logging step sees its own forward only.
  RoutingRecord next;
  ctx.record = &next;
  layer(torch::randn({4, 2}), ctx);
  for (const auto& [name, value] : next.layer_metrics.at(0).second) m[name] = value.item<double>();
  CHECK(m.at("dead_interval") == 2.0);
}

TEST_CASE("layer summaries: mean, 90th percentile and worst layer of the imbalance metrics",
          "[moe]") {
  RoutingRecord record;
  for (int64_t block = 0; block < 5; ++block) {
    const float value = static_cast<float>(block + 1);  // 1 .. 5
    record.layer_metrics.push_back({block, {{"load_cv", torch::full({}, value)},
                                            {"gate_entropy", torch::full({}, value)}}});
  }
  record.layer_metrics.push_back({4, {{"load_cv", torch::full({}, 7.0F)},  // a second micro-batch
                                      {"gate_entropy", torch::full({}, 7.0F)}}});
  std::map<std::string, double> m;
  for (const auto& [name, value] : record.routing_metrics()) m[name] = value.item<double>();
  CHECK(m.at("l4/load_cv") == Approx(6.0));  // (5 + 7) / 2
  CHECK(m.at("load_cv") == Approx((1 + 2 + 3 + 4 + 6) / 5.0));
  // Layers 1, 2, 3, 4, 6: the 0.9 quantile interpolates 4 and 6 at 0.6.
  CHECK(m.at("load_cv_p90") == Approx(4 + 0.6 * 2));
  CHECK(m.at("load_cv_max") == Approx(6.0));
  CHECK(m.count("gate_entropy_p90") == 0);  // not an imbalance metric
}

TEST_CASE("null experts: zero adds nothing, copy the token, constant its vector, at no FFN cost",
          "[moe][null_experts]") {
  MoeConfig config;
  config.experts = 2;
  config.expert_hidden = 3;
  config.null_experts = NullExperts::parse("zero:1,copy:1,constant:1");  // experts 2, 3 and 4
  // Token 0: FFN expert 0 (0.5) and copy (0.5); token 1: zero (1.0); token 2: constant (0.8)
  // and FFN expert 1 (0.2).
  auto route = assignments({0, 0, 1, 2, 2}, {0, 3, 2, 4, 1}, {0.5, 0.5, 1.0, 0.8, 0.2});
  MoELayer layer(2, config, std::make_shared<FixedRouter>(route));
  auto params = layer->named_parameters();
  {
    torch::NoGradGuard no_grad;
    params["null_constant"].copy_(torch::tensor({{9.0F, 9.0F}, {9.0F, 9.0F}, {1.0F, 2.0F}}));
  }
  torch::manual_seed(3);
  auto x = torch::randn({3, 2});
  RoutingRecord record;
  RouteContext ctx;
  ctx.collect_metrics = true;
  ctx.record = &record;
  auto y = layer(x, ctx);
  auto ffn = [&](int64_t e, const torch::Tensor& v) {
    auto h = torch::gelu(torch::matmul(v, params["w_in"][e]) + params["b_in"][e]);
    return torch::matmul(h, params["w_out"][e]) + params["b_out"][e];
  };
  torch::NoGradGuard no_grad;
  CHECK(y[0].allclose(0.5 * ffn(0, x[0]) + 0.5 * x[0], 1e-5, 1e-6));
  CHECK(y[1].allclose(torch::zeros({2})));
  // The zero and copy rows of null_constant (9s) take no part: only the constant expert's.
  CHECK(y[2].allclose(0.8 * torch::tensor({1.0F, 2.0F}) + 0.2 * ffn(1, x[2]), 1e-5, 1e-6));
  std::map<std::string, double> m;
  for (const auto& [name, value] : record.layer_metrics.at(0).second) m[name] = value.item<double>();
  CHECK(m.at("null_frac") == Approx(3.0 / 5.0));
  CHECK(m.at("experts_per_token") == Approx(2.0 / 3.0));  // FFN experts only
  CHECK(m.count("load_e2") == 0);                         // loads over the FFN experts
  CHECK(m.at("load_e0") == Approx(0.5));
  for (const char* bad : {"void:1", "copy:0", "zero:x", "constant:65"}) {
    INFO(bad);
    CHECK_THROWS_WITH(parse_run_config("", "t.yaml", {std::string("model.moe.null_experts=") + bad}),
                      Catch::Matchers::Contains("model.moe.null_experts"));
  }
  CHECK(routed_experts(parse_run_config("", "t.yaml", {"model.moe.null_experts=zero:2,copy"}).model.moe) ==
        8 + 3);
}

TEST_CASE("gradients flow to experts and router through the layer", "[moe]") {
  RunConfig run = parse_run_config("", "g.yaml", {"model.moe.experts=4", "router.aux_coef=0.01"});
  auto router = make_router(run.router, RouterShape{8, 4});
  MoELayer layer(8, run.model.moe, router);
  auto x = torch::randn({16, 8});
  RoutingRecord record;
  RouteContext ctx;
  ctx.record = &record;
  auto y = layer(x, ctx);
  REQUIRE(record.aux_loss.defined());  // aux_coef > 0: the Switch loss was reported
  (y.pow(2).sum() + record.aux_loss).backward();
  for (const auto& p : layer->named_parameters()) {
    INFO(p.key());
    REQUIRE(p.value().grad().defined());
    CHECK(p.value().grad().abs().sum().item<double>() > 0);
  }
}

namespace {

struct ExpertsRun {
  torch::Tensor out;
  std::vector<torch::Tensor> grads;  // inputs, w_in, b_in, w_out, b_out
};

// Output and gradients of sum(out * weights) through `run` on copies of the inputs.
template <typename Run>
ExpertsRun run_with_grads(const torch::Tensor& inputs, const ExpertWeights& experts,
                          const torch::Tensor& weights, const Run& run) {
  std::vector<torch::Tensor> leaves;
  for (const auto& t : {inputs, experts.w_in, experts.b_in, experts.w_out, experts.b_out}) {
    leaves.push_back(t.detach().clone().requires_grad_(true));
  }
  auto out = run(leaves[0], ExpertWeights{leaves[1], leaves[2], leaves[3], leaves[4]});
  (out * weights).sum().backward();
  ExpertsRun result{out.detach(), {}};
  for (const auto& leaf : leaves) result.grads.push_back(leaf.grad());
  return result;
}

}  // namespace

TEST_CASE("expert-parallel FFNs equal the per-expert loop, gradients too", "[moe]") {
  torch::manual_seed(3);
  const int64_t experts = 5, dim = 6, hidden = 7;
  const std::vector<int64_t> rows = {4, 0, 9, 1, 6};  // expert 1 gets no row
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    CAPTURE(dtype);
    const auto options = torch::dtype(dtype);
    ExpertWeights weights{torch::randn({experts, dim, hidden}, options),
                          torch::randn({experts, hidden}, options),
                          torch::randn({experts, hidden, dim}, options),
                          torch::randn({experts, dim}, options)};
    auto inputs = torch::randn({20, dim}, options);
    auto probe = torch::randn({20, dim}, options);
    const auto reference = run_with_grads(inputs, weights, probe, [&](auto x, auto w) {
      return experts_reference(x, w, rows);
    });
    const auto parallel = run_with_grads(inputs, weights, probe, [&](auto x, auto w) {
      return experts_parallel(x, w, rows);
    });
    // The same operators in the same order per expert: the same values.
    CHECK(torch::equal(parallel.out, reference.out));
    for (size_t i = 0; i < reference.grads.size(); ++i) {
      CAPTURE(i);
      CHECK(torch::equal(parallel.grads[i], reference.grads[i]));
    }
    CHECK(parallel.grads[1][1].abs().sum().item<double>() == 0);  // no rows, no gradient
  }
  SECTION("the rows must add up") {
    ExpertWeights weights{torch::randn({2, 3, 4}), torch::randn({2, 4}), torch::randn({2, 4, 3}),
                          torch::randn({2, 3})};
    CHECK_THROWS_WITH(experts_parallel(torch::randn({5, 3}), weights, {2, 2}),
                      Catch::Contains("5 input rows"));
  }
}

TEST_CASE("expert-parallel FFNs give the same bits on one thread and on two", "[moe]") {
  torch::manual_seed(4);
  ExpertWeights weights{torch::randn({8, 16, 32}), torch::randn({8, 32}),
                        torch::randn({8, 32, 16}), torch::randn({8, 16})};
  const std::vector<int64_t> rows = {40, 3, 17, 0, 25, 25, 8, 12};
  auto inputs = torch::randn({130, 16});
  auto probe = torch::randn({130, 16});
  auto run = [&](auto x, auto w) { return experts_parallel(x, w, rows); };
  ExpertsRun one, two;
  {
    testing::ThreadCountScope threads(1);
    one = run_with_grads(inputs, weights, probe, run);
  }
  {
    testing::ThreadCountScope threads(2);
    REQUIRE(testing::parallel_for_threads(2) == 2);  // the experts really split
    two = run_with_grads(inputs, weights, probe, run);
  }
  CHECK(torch::equal(one.out, two.out));
  for (size_t i = 0; i < one.grads.size(); ++i) CHECK(torch::equal(one.grads[i], two.grads[i]));
  SECTION("no double backward") {
    auto x = inputs.clone().requires_grad_(true);
    auto out = experts_parallel(x, weights, rows);
    CHECK_THROWS_WITH(torch::autograd::grad({out.sum()}, {x}, {}, true, true),
                      Catch::Contains("no double backward"));
  }
}

}  // namespace moelab
