// Registry contract: every registered plugin is constructible from its defaults, and every
// router honours the decision contract on random inputs.
#include "routers/registry.h"

#include <cmath>
#include <map>

#include "harness/model/init_streams.h"
#include "harness/model/moe_layer.h"

#include "tasks/image/image_task.h"
#include "tasks/registry.h"
#include "test_util.h"

namespace moelab {

TEST_CASE("every registered router builds from defaults and keeps the contract", "[registry]") {
  for (const auto& entry : router_registry()) {
    DYNAMIC_SECTION("router " << entry.name) {
      RunConfig config = parse_run_config("", "defaults.yaml",
                                          {std::string("router.name=") + entry.name});
      const int64_t tokens = 64, dim = 16, experts = config.model.moe.experts;
      auto router = make_router(config.router, RouterShape{dim, experts, 3, 0});
      torch::manual_seed(0);
      auto x = torch::randn({tokens, dim});
      RouteContext ctx;
      ctx.training = true;
      ctx.step = 1;
      ctx.seed = 3;
      ctx.group_size = 16;
      ctx.token_ids = torch::randint(0, 1000, {tokens}, torch::kLong);
      torch::manual_seed(5);
      RouteResult r = router->route(x, ctx);
      // Routing draws nothing from the default generator (noise comes from its own stream),
      // so dropout's draws do not depend on the router (docs/design.md#paired-runs).
      const auto after_routing = torch::rand({8});
      torch::manual_seed(5);
      CHECK(torch::equal(after_routing, torch::rand({8})));

      torch::Tensor objective = torch::zeros({});
      if (r.soft_dispatch.defined()) {
        CHECK(torch::allclose(r.soft_dispatch.sum(1), torch::ones({1})));  // over tokens
        CHECK(torch::allclose(r.soft_combine.sum(2), torch::ones({1})));   // over slots
        objective = (r.soft_dispatch * torch::rand_like(r.soft_dispatch)).sum();
      } else {
        const int64_t assignments = r.expert.numel();
        REQUIRE(r.token.numel() == assignments);
        REQUIRE(r.weight.numel() == assignments);
        REQUIRE(r.priority.numel() == assignments);
        CHECK(r.token.scalar_type() == torch::kLong);
        CHECK(r.expert.scalar_type() == torch::kLong);
        REQUIRE(assignments > 0);
        CHECK(r.token.min().item<int64_t>() >= 0);
        CHECK(r.token.max().item<int64_t>() < tokens);
        CHECK(r.expert.min().item<int64_t>() >= 0);
        CHECK(r.expert.max().item<int64_t>() < experts);
        CHECK(torch::isfinite(r.weight).all().item<bool>());
        CHECK(r.weight.min().item<double>() >= 0.0);
        // No (token, expert) pair twice.
        CHECK(std::get<0>(torch::_unique(r.token * experts + r.expert)).numel() == assignments);
        // Capacity is respected by the MoE layer's plan.
        Dispatch capped = plan_dispatch(r, experts, 1.0, "probs");
        const auto capacity = static_cast<int64_t>(std::ceil(double(assignments) / experts));
        for (int64_t kept : capped.kept_per_expert) CHECK(kept <= capacity);
        objective = (r.weight * torch::arange(assignments).to(torch::kFloat)).sum();
      }
      for (const auto& [name, loss] : r.aux_losses) {
        INFO("aux loss " << name);
        CHECK(loss.dim() == 0);
        CHECK(loss.requires_grad());
        objective = objective + loss;
      }
      // Gradients reach every trainable router parameter that the decision used.
      bool trainable = false, any_grad = false;
      if (objective.requires_grad()) objective.backward();
      for (const auto& p : router->parameters()) {
        if (!p.requires_grad()) continue;
        trainable = true;
        any_grad = any_grad || (p.grad().defined() && p.grad().abs().sum().item<double>() > 0);
      }
      CHECK(any_grad == trainable);
      // Same seed and input: same decision.
      torch::manual_seed(5);
      RouteResult again = router->route(x, ctx);
      if (r.soft_dispatch.defined()) {
        CHECK(torch::equal(again.soft_dispatch, r.soft_dispatch));
      } else {
        CHECK(torch::equal(again.expert, r.expert));
        CHECK(torch::equal(again.token, r.token));
        CHECK(torch::allclose(again.weight, r.weight));
      }
    }
  }
}

// Paired runs: a model built under the run's InitStreams gives every parameter outside the
// router the same initial value whatever the router, though routers create different numbers
// of parameters (noisy_topk's noise gate, usmoe's, soft_moe's slots) before the blocks.
TEST_CASE("runs that differ only in the router start from the same other parameters",
          "[registry][pairing]") {
  auto build = [](const std::string& router) {
    const RunConfig config = parse_run_config(
        "", "defaults.yaml",
        {"router.name=" + router, "model.depth=3", "model.dim=16", "model.heads=2",
         "model.moe.experts=4", "model.moe.expert_hidden=8", "model.moe.layers=0,2"});
    const InitStreams streams(11);
    return std::make_shared<VitImpl>(config, 1, 8, 4, 3);
  };
  const auto reference = build("topk")->named_parameters();
  auto is_router_parameter = [](const std::string& name) {
    return name.find(".router.") != std::string::npos;
  };
  int64_t shared = 0;
  for (const auto& parameter : reference) shared += is_router_parameter(parameter.key()) ? 0 : 1;
  for (const auto& entry : router_registry()) {
    DYNAMIC_SECTION("router " << entry.name) {
      const auto model = build(entry.name);
      int64_t compared = 0;
      for (const auto& parameter : model->named_parameters()) {
        if (is_router_parameter(parameter.key())) continue;
        const torch::Tensor* expected = reference.find(parameter.key());
        REQUIRE(expected != nullptr);
        INFO(parameter.key());
        CHECK(torch::equal(parameter.value(), *expected));
        ++compared;
      }
      CHECK(compared == shared);
    }
  }
}

TEST_CASE("every registered task creates its options from defaults", "[registry]") {
  for (const auto& entry : task_registry()) {
    DYNAMIC_SECTION("task " << entry.name) {
      auto options = entry.make_options();
      CHECK(!list_fields(*options).empty());
    }
  }
}

TEST_CASE("topk picks the k largest logits with softmax gates", "[registry][router]") {
  RunConfig config = parse_run_config("", "t.yaml", {"router.k=2", "model.moe.experts=4"});
  auto router = make_router(config.router, RouterShape{2, 4});
  // Gate weight [E, D] chosen so that logits = x @ W^T are easy to read.
  {
    torch::NoGradGuard no_grad;
    router->parameters()[0].copy_(torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f},
                                                 {-1.0f, 0.0f}, {0.5f, 0.5f}}));
  }
  auto x = torch::tensor({{2.0f, 0.0f}, {0.0f, 3.0f}});  // logits [2,0,-2,1] and [0,3,0,1.5]
  RouteResult r = router->route(x, RouteContext{});
  CHECK(testing::as_vector(r.token) == std::vector<int64_t>{0, 0, 1, 1});
  CHECK(testing::as_vector(r.expert) == std::vector<int64_t>{0, 3, 1, 3});
  const double g0 = 1.0 / (1.0 + std::exp(-1.0));  // softmax over logits {2, 1}
  const double g1 = 1.0 / (1.0 + std::exp(-1.5));  // softmax over logits {3, 1.5}
  CHECK(r.weight[0].item<double>() == Approx(g0));
  CHECK(r.weight[1].item<double>() == Approx(1 - g0));
  CHECK(r.weight[2].item<double>() == Approx(g1));
  CHECK(r.weight[3].item<double>() == Approx(1 - g1));
}


namespace {

// Every aux loss and every shared metric the layer reported in one forward, by name.
std::map<std::string, double> layer_scalars(const RoutingRecord& record) {
  REQUIRE(record.layer_metrics.size() == 1);
  std::map<std::string, double> out;
  for (const auto& [name, value] : record.layer_metrics[0].second) {
    if (name != "route_ms") out[name] = value.item<double>();
  }
  out["aux_loss"] = record.total_aux_loss(torch::kCPU).item<double>();
  return out;
}

}  // namespace

TEST_CASE("every registered router ignores padded tokens", "[registry][padding]") {
  // Two sequences of 8 tokens, the last 3 of each padded. Changing the padded tokens' values
  // must change nothing: not the real tokens' outputs, not the aux losses, not the metrics;
  // and a padded token gets no expert (its output is 0).
  const int64_t tokens = 16, dim = 8;
  auto valid = torch::ones({tokens}, torch::kBool);
  for (int64_t i : {5, 6, 7, 13, 14, 15}) valid[i] = false;
  for (const auto& entry : router_registry()) {
    DYNAMIC_SECTION("router " << entry.name) {
      RunConfig config = parse_run_config("", "defaults.yaml",
                                          {std::string("router.name=") + entry.name,
                                           "model.moe.experts=4", "model.moe.expert_hidden=8"});
      if (entry.name == std::string("usmoe") || entry.name == std::string("expert_choice")) {
        config = parse_run_config("", "defaults.yaml",
                                  {std::string("router.name=") + entry.name, "router.k=1",
                                   "model.moe.experts=4", "model.moe.expert_hidden=8"});
      }
      torch::manual_seed(0);
      auto router = make_router(config.router, RouterShape{dim, 4, 3, 0});
      MoELayer layer(dim, config.model.moe, router);
      RouteContext ctx;
      ctx.training = true;
      ctx.step = 1;
      ctx.seed = 3;
      ctx.group_size = 8;
      ctx.valid = valid;
      ctx.collect_metrics = true;
      ctx.token_ids = torch::randint(0, 1000, {tokens}, torch::kLong);
      auto x = torch::randn({tokens, dim});
      auto other = x.clone();
      other.index_put_({~valid}, torch::randn({6, dim}) * 10);
      torch::NoGradGuard no_grad;
      RoutingRecord first_record, second_record;
      torch::manual_seed(7);
      ctx.record = &first_record;
      auto y = layer(x, ctx);
      const auto first = layer_scalars(first_record);
      torch::manual_seed(7);
      ctx.record = &second_record;
      auto y_other = layer(other, ctx);
      const auto second = layer_scalars(second_record);
      CHECK(torch::allclose(y, y_other, 1e-5, 1e-5));
      CHECK(y.index({~valid}).abs().max().item<double>() == 0.0);
      for (const auto& [name, value] : first) {
        INFO(name);
        CHECK(second.at(name) == Approx(value).margin(1e-6));
      }
    }
  }
}

}  // namespace moelab
