// The MoE layer's baselines (issue: shared experts, dense router gradients): the shared experts
// against a dense FFN written out here, under every router; DenseMixer's dense router gradient
// with the sparse forward bit for bit, the experts' gradients unchanged, and the router's
// gradient against central finite differences of the function it is the gradient of.

#include <cmath>
#include <map>

#include "harness/config/config.h"
#include "harness/model/moe_layer.h"
#include "registry_layer.h"
#include "routers/registry.h"
#include "test_util.h"

namespace moelab {
namespace {

const int64_t kDim = testing::kLayerDim;

MoELayer layer_for(const std::vector<std::string>& overrides) { return testing::registry_layer(overrides); }

RouteContext training_context() { return testing::context_for_64_tokens(/*training=*/true); }

torch::Tensor parameter(MoELayer& layer, const std::string& name) {
  return layer->named_parameters(/*recurse=*/true)[name];
}

// The dense FFN of the shared experts written out: GELU(x W1 + b1) W2 + b2, gated by
// sigmoid(x . w) when the layer has a gate.
torch::Tensor shared_ffn(MoELayer& layer, const torch::Tensor& x) {
  auto params = layer->named_parameters(/*recurse=*/false);
  auto y = torch::matmul(torch::gelu(torch::matmul(x, params["shared_w_in"]) + params["shared_b_in"]),
                         params["shared_w_out"]) +
           params["shared_b_out"];
  if (params.contains("shared_gate")) y = y * torch::sigmoid(torch::matmul(x, params["shared_gate"])).unsqueeze(1);
  return y;
}

void zero_routed_experts(MoELayer& layer) {
  torch::NoGradGuard no_grad;
  for (const char* name : {"w_in", "b_in", "w_out", "b_out"}) parameter(layer, name).zero_();
}

}  // namespace

TEST_CASE("shared experts: routed weights zeroed, the layer is the dense FFN of the shared size",
          "[baselines][shared]") {
  for (const char* gate : {"none", "sigmoid"}) {
    DYNAMIC_SECTION("shared_gate " << gate) {
      torch::manual_seed(4);
      MoELayer layer = layer_for({"model.moe.shared_experts=2", "model.moe.shared_hidden=24",
                                  std::string("model.moe.shared_gate=") + gate});
      CHECK(parameter(layer, "shared_w_in").sizes() == std::vector<int64_t>{kDim, 48});  // 2 x 24 neurons
      {
        torch::NoGradGuard no_grad;
        parameter(layer, "shared_b_in").uniform_(-0.5, 0.5);
        parameter(layer, "shared_b_out").uniform_(-0.5, 0.5);
      }
      zero_routed_experts(layer);
      const auto x = torch::randn({64, kDim});
      RouteContext ctx = training_context();
      torch::NoGradGuard no_grad;
      CHECK(torch::allclose(layer->forward(x, ctx), shared_ffn(layer, x), 1e-5, 1e-6));
    }
  }
}

TEST_CASE("shared experts under every router: added to the routed output, outside the load metrics",
          "[baselines][shared][registry]") {
  for (const auto& entry : router_registry()) {
    DYNAMIC_SECTION("router " << entry.name) {
      torch::manual_seed(5);
      const std::string router = std::string("router.name=") + entry.name;
      MoELayer shared = layer_for({router, "model.moe.shared_experts=1"});
      torch::manual_seed(5);
      MoELayer routed_only = layer_for({router});
      {
        torch::NoGradGuard no_grad;
        for (const auto& item : routed_only->named_parameters()) item.value().copy_(parameter(shared, item.key()));
      }
      const auto x = torch::randn({64, kDim});
      RoutingRecord with, without;
      RouteContext ctx = training_context();
      ctx.collect_metrics = true;
      torch::NoGradGuard no_grad;
      ctx.record = &with;
      const auto y = shared->forward(x, ctx);
      ctx.record = &without;
      const auto y_routed = routed_only->forward(x, ctx);
      CHECK(torch::allclose(y - y_routed, shared_ffn(shared, x), 1e-5, 1e-5));
      REQUIRE(with.layer_metrics.size() == 1);
      const auto& a = with.layer_metrics[0].second;
      const auto& b = without.layer_metrics[0].second;
      REQUIRE(a.size() == b.size());
      for (size_t i = 0; i < a.size(); ++i) {
        if (a[i].first == "route_ms") continue;
        INFO(a[i].first);
        CHECK(torch::equal(a[i].second, b[i].second));
      }
    }
  }
}

TEST_CASE("dense router gradient: the sparse forward bit for bit, the experts' gradients unchanged",
          "[baselines][dense_grad][registry]") {
  for (const auto& entry : router_registry()) {
    DYNAMIC_SECTION("router " << entry.name) {
      const std::string router = std::string("router.name=") + entry.name;
      torch::manual_seed(6);
      MoELayer sparse = layer_for({router});
      torch::manual_seed(6);
      MoELayer dense = layer_for({router, "model.moe.router_grad=dense"});
      const auto x = torch::randn({64, kDim});
      const auto probe = torch::randn({64, kDim});
      torch::manual_seed(7);
      RouteContext ctx = training_context();
      const auto y_sparse = sparse->forward(x, ctx);
      torch::manual_seed(7);
      torch::Tensor y_dense;
      try {
        y_dense = dense->forward(x, ctx);
      } catch (const Error& e) {  // soft routing, or no probabilities to differentiate
        CHECK(std::string(e.what()).find("model.moe.router_grad = dense") != std::string::npos);
        continue;
      }
      CHECK(torch::equal(y_dense, y_sparse));
      (y_sparse * probe).sum().backward();
      (y_dense * probe).sum().backward();
      for (const char* name : {"w_in", "b_in", "w_out", "b_out"}) {
        INFO(name);
        const auto a = parameter(sparse, name).grad(), b = parameter(dense, name).grad();
        REQUIRE(a.defined() == b.defined());
        if (a.defined()) CHECK(torch::allclose(a, b, 1e-6, 1e-7));
      }
    }
  }
}

TEST_CASE("dense router gradient against central finite differences on a small layer",
          "[baselines][dense_grad]") {
  // J(theta) = sum_t g_t . [ sum_{e in S_t} w_te f_e(x_t) + sum_{e not in S_t} p_te f_e(x_t) ],
  // the selections S fixed at theta: the sparse layer's output plus the unselected experts
  // weighted by the router's probabilities, f_e written out here.
  torch::manual_seed(8);
  MoELayer layer = layer_for({"router.name=topk", "model.moe.experts=4", "model.moe.expert_hidden=8",
                              "model.moe.router_grad=dense"});
  auto gate = parameter(layer, "router.gate.weight");
  REQUIRE(gate.defined());
  // Tokens whose 2nd and 3rd logits are 0.05 apart, so that steps of 5e-3 along a unit
  // direction (logits move by at most |x| 5e-3 < 0.05) keep every selection.
  const auto candidates = torch::randn({256, kDim});
  const auto sorted = std::get<0>(torch::sort(torch::matmul(candidates, gate.detach().t()), -1, true));  // [256, 4]
  const auto x = candidates.index({(sorted.select(1, 1) - sorted.select(1, 2)).gt(0.05) &
                                   candidates.norm(2, -1).lt(8.0)});
  const int64_t tokens = x.size(0);
  REQUIRE(tokens >= 32);
  const auto g = torch::randn({tokens, kDim});
  RouteContext ctx = training_context();
  ctx.token_ids = torch::Tensor();
  ctx.group_size = 0;

  auto expert_outputs = [&] {  // [E, T, D]
    auto params = layer->named_parameters(/*recurse=*/false);
    auto hidden = torch::gelu(torch::matmul(x.unsqueeze(0), params["w_in"]) + params["b_in"].unsqueeze(1));
    return torch::matmul(hidden, params["w_out"]) + params["b_out"].unsqueeze(1);
  };
  auto selected_of = [&](const RouteResult& route) {  // [T, E] bool
    return torch::zeros({tokens, 4}, torch::kBool).index_put_({route.token, route.expert}, torch::ones({}, torch::kBool));
  };
  torch::Tensor selected;
  {
    torch::NoGradGuard no_grad;
    selected = selected_of(layer->router().route(x, ctx));
  }
  auto objective = [&]() -> double {  // in double from fp32 pieces
    torch::NoGradGuard no_grad;
    RouteContext eval = ctx;
    eval.training = false;
    const RouteResult route = layer->router().route(x, eval);
    REQUIRE(torch::equal(selected_of(route), selected));  // the step kept the selections
    const auto f = expert_outputs().to(torch::kDouble);                                  // [E, T, D]
    const auto unselected = route.probs.to(torch::kDouble).masked_fill(selected, 0.0);    // [T, E]
    const auto correction = torch::einsum("te,etd->td", {unselected, f});
    return ((layer->forward(x, eval).to(torch::kDouble) + correction) * g.to(torch::kDouble)).sum().item<double>();
  };

  (layer->forward(x, ctx) * g).sum().backward();
  const auto analytic = gate.grad().clone();
  for (int direction = 0; direction < 3; ++direction) {
    const auto direction_v = torch::randn_like(gate);
    const auto v = direction_v / direction_v.norm();
    const double h = 5e-3;
    {
      torch::NoGradGuard no_grad;
      gate.add_(v * h);
    }
    const double plus = objective();
    {
      torch::NoGradGuard no_grad;
      gate.sub_(v * (2 * h));
    }
    const double minus = objective();
    {
      torch::NoGradGuard no_grad;
      gate.add_(v * h);
    }
    const double numeric = (plus - minus) / (2 * h);
    const double exact = (analytic * v).sum().item<double>();
    INFO("direction " << direction << ": analytic " << exact << ", finite differences " << numeric);
    CHECK(exact == Approx(numeric).epsilon(2e-3).margin(1e-3));
  }
  SECTION("the sparse gradient is not that: it leaves out the unselected experts") {
    torch::manual_seed(8);
    MoELayer sparse = layer_for({"router.name=topk", "model.moe.experts=4", "model.moe.expert_hidden=8"});
    {
      torch::NoGradGuard no_grad;
      for (const auto& item : sparse->named_parameters()) item.value().copy_(parameter(layer, item.key()));
    }
    (sparse->forward(x, ctx) * g).sum().backward();
    CHECK_FALSE(torch::allclose(parameter(sparse, "router.gate.weight").grad(), analytic, 1e-3, 1e-5));
  }
}

TEST_CASE("evaluation capacity factor: training drops at its capacity, evaluation at its own",
          "[baselines][capacity]") {
  torch::manual_seed(9);
  MoELayer layer = layer_for({"router.name=topk", "model.moe.capacity_factor=0.5",
                              "model.moe.eval_capacity_factor=0"});
  const auto x = torch::randn({64, kDim});
  auto dropped = [&](bool training) {
    RoutingRecord record;
    RouteContext ctx = training_context();
    ctx.training = training;
    ctx.collect_metrics = true;
    ctx.record = &record;
    torch::NoGradGuard no_grad;
    layer->forward(x, ctx);
    for (const auto& [name, value] : record.layer_metrics.at(0).second) {
      if (name == "dropped_frac") return value.item<double>();
    }
    FAIL("no dropped_frac");
    return -1.0;
  };
  // Capacity ceil(0.5 x 128 / 8) = 8 of the 128 top-2 assignments per expert: at most 64 kept.
  CHECK(dropped(true) >= 0.5);
  CHECK(dropped(false) == 0.0);  // dropless in evaluation
}

TEST_CASE("router input jitter: the router's input scaled by U(1 - eps, 1 + eps) in training only",
          "[baselines][jitter]") {
  torch::manual_seed(10);
  MoELayer jittered = layer_for({"router.name=topk", "model.moe.router_jitter=0.5"});
  torch::manual_seed(10);
  MoELayer plain = layer_for({"router.name=topk"});
  const auto x = torch::randn({64, kDim});
  RouteContext ctx = training_context();
  torch::NoGradGuard no_grad;
  torch::manual_seed(11);
  const auto y = jittered->forward(x, ctx);
  const auto after = torch::rand({4});
  torch::manual_seed(11);
  const auto y_again = jittered->forward(x, ctx);
  CHECK(torch::equal(y, y_again));                   // a function of (seed, step, layer)
  CHECK(torch::equal(torch::rand({4}), after));      // the default generator's sequence untouched
  CHECK_FALSE(torch::equal(y, plain->forward(x, ctx)));  // eps 0.5 moves the routing
  ctx.step = 2;
  CHECK_FALSE(torch::equal(y, jittered->forward(x, ctx)));  // another step, other jitter
  ctx.training = false;
  CHECK(torch::equal(jittered->forward(x, ctx), plain->forward(x, ctx)));  // none in evaluation
}

TEST_CASE("deepseek_v3 with score sqrtsoftplus: affinities sqrt(softplus(z)), gates normalised",
          "[baselines][deepseek]") {
  const RunConfig config = parse_run_config(
      "", "defaults.yaml", {"router.name=deepseek_v3", "router.score=sqrtsoftplus", "router.alpha=0"});
  auto router = std::dynamic_pointer_cast<LogitRouter>(make_router(config.router, RouterShape{kDim, 4, 3, 0}));
  REQUIRE(router);
  const std::vector<std::vector<double>> z = {{1.0, -0.5, 2.0, 0.0}, {-1.0, 0.5, 0.3, -2.0}};
  auto logits = torch::tensor({1.0F, -0.5F, 2.0F, 0.0F, -1.0F, 0.5F, 0.3F, -2.0F}).view({2, 4});
  RouteContext ctx;
  const RouteResult result = router->decide(logits, ctx);
  auto affinity = [](double v) { return std::sqrt(std::log1p(std::exp(v))); };
  // Top-2 of each row (monotone in z, no bias yet): experts {2, 0} and {1, 2}.
  const std::map<std::pair<int64_t, int64_t>, double> expected = {
      {{0, 2}, affinity(2.0) / (affinity(2.0) + affinity(1.0))},
      {{0, 0}, affinity(1.0) / (affinity(2.0) + affinity(1.0))},
      {{1, 1}, affinity(0.5) / (affinity(0.5) + affinity(0.3))},
      {{1, 2}, affinity(0.3) / (affinity(0.5) + affinity(0.3))}};
  REQUIRE(result.token.numel() == 4);
  for (int64_t a = 0; a < 4; ++a) {
    const std::pair<int64_t, int64_t> key{result.token[a].item<int64_t>(), result.expert[a].item<int64_t>()};
    INFO("token " << key.first << " expert " << key.second);
    REQUIRE(expected.count(key) == 1);
    CHECK(result.weight[a].item<double>() == Approx(expected.at(key)).epsilon(1e-6));
  }
  // The reported probabilities: the affinities normalised over all experts.
  double row = 0;
  for (double v : z[0]) row += affinity(v);
  CHECK(result.probs[0][2].item<double>() == Approx(affinity(2.0) / row).epsilon(1e-6));
}

TEST_CASE("router_dtype fp64: the decision of fp32 where fp32 resolves it, under every router with logits",
          "[baselines][router_dtype][registry]") {
  for (const auto& entry : router_registry()) {
    DYNAMIC_SECTION("router " << entry.name) {
      const std::string router = std::string("router.name=") + entry.name;
      if (!entry.logit_router) {  // refused by the config
        CHECK_THAT(testing::config_error("", {router, "model.moe.router_dtype=fp64"}),
                   Catch::Matchers::Contains("model.moe.router_dtype") &&
                       Catch::Matchers::Contains("no linear logits"));
        continue;
      }
      torch::manual_seed(8);
      MoELayer fp32 = layer_for({router});
      torch::manual_seed(8);
      MoELayer fp64 = layer_for({router, "model.moe.router_dtype=fp64"});
      REQUIRE(dynamic_cast<LogitRouter*>(&fp64->router()) != nullptr);
      const auto x = torch::randn({64, kDim});
      RouteContext eval = testing::context_for_64_tokens(/*training=*/false);
      {
        torch::NoGradGuard no_grad;
        const RouteResult a = fp32->router().route(x, eval), b = fp64->router().route(x, eval);
        if (b.logits.defined()) CHECK(b.logits.scalar_type() == torch::kDouble);
        REQUIRE(torch::equal(a.token, b.token));
        CHECK(torch::equal(a.expert, b.expert));
        CHECK(torch::allclose(a.weight.to(torch::kDouble), b.weight.to(torch::kDouble), 1e-5, 1e-6));
        CHECK(torch::allclose(fp32->forward(x, eval), fp64->forward(x, eval), 1e-5, 1e-5));
      }
      // Training: the layer's output stays fp32 and the gate's gradient arrives in fp32.
      RouteContext train = training_context();
      RoutingRecord record;
      train.record = &record;
      const auto y = fp64->forward(x, train);
      CHECK(y.scalar_type() == torch::kFloat);
      (y.pow(2).sum() + record.total_aux_loss(torch::kCPU)).backward();
      const auto grad = dynamic_cast<LogitRouter&>(fp64->router()).gate()->weight.grad();
      if (grad.defined()) {
        CHECK(grad.scalar_type() == torch::kFloat);
        CHECK(torch::isfinite(grad).all().item<bool>());
      }
    }
  }
}

TEST_CASE("router_dtype fp64 separates logits that fp32 rounds to a tie", "[baselines][router_dtype]") {
  // z0 = 1, z1 = 1 + 2^-26: equal in fp32 (the gap is below half an ulp of 1), apart in fp64.
  for (const char* dtype : {"fp32", "fp64"}) {
    MoELayer layer = layer_for({"router.name=topk", "router.k=1", "model.moe.experts=2",
                                std::string("model.moe.router_dtype=") + dtype});
    auto gate = dynamic_cast<LogitRouter&>(layer->router()).gate()->weight;  // [2, D]
    torch::NoGradGuard no_grad;
    gate.zero_();
    gate[0][0] = 1.0F;
    gate[1][0] = 1.0F;
    gate[1][1] = 1.0F;
    auto x = torch::zeros({1, kDim});
    x[0][0] = 1.0F;
    x[0][1] = std::ldexp(1.0F, -26);
    const RouteResult route = layer->router().route(x, RouteContext{});
    INFO(dtype);
    if (std::string(dtype) == "fp32") {
      CHECK(route.logits[0][0].item<double>() == route.logits[0][1].item<double>());
    } else {
      CHECK(route.logits[0][1].item<double>() - route.logits[0][0].item<double>() == std::ldexp(1.0, -26));
      CHECK(route.expert.item<int64_t>() == 1);
    }
  }
}

TEST_CASE("shared experts and dense router gradients: configuration rules", "[baselines][config]") {
  CHECK(testing::config_error("model: {moe: {shared_gate: tanh}}\n").find("model.moe.shared_gate") !=
        std::string::npos);
  CHECK(testing::config_error("model: {moe: {router_grad: full}}\n").find("model.moe.router_grad") !=
        std::string::npos);
  const auto converted = testing::config_error(
      "router: {name: dot_moe}\nmodel: {ffn_hidden: 128, moe: {experts: 8, expert_hidden: 16, shared_experts: 1}}\n"
      "convert: {method: random}\n");
  CHECK(converted.find("shared experts") != std::string::npos);
  CHECK(testing::config_error("model: {moe: {eval_capacity_factor: -0.5}}\n").find("model.moe.eval_capacity_factor") !=
        std::string::npos);
  CHECK(testing::config_error("model: {moe: {router_jitter: 1.5}}\n").find("model.moe.router_jitter") !=
        std::string::npos);
}

}  // namespace moelab
