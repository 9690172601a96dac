// Router diagnostics (harness/model/routing_diagnostics.h, routers/losses.h): golden values on
// small hand-made probability matrices and loads, worked out in the comments; and every router
// of the registry reporting them through the MoE layer.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>

#include "harness/config/config.h"
#include "harness/model/moe_layer.h"
#include "harness/model/routing_diagnostics.h"
#include "routers/losses.h"
#include "registry_layer.h"
#include "routers/registry.h"
#include "test_util.h"

namespace moelab {
namespace {

std::map<std::string, double> as_map(const std::vector<std::pair<std::string, torch::Tensor>>& metrics) {
  std::map<std::string, double> values;
  for (const auto& [name, value] : metrics) values[name] = value.item<double>();
  return values;
}

torch::Tensor longs(std::vector<int64_t> values) { return torch::tensor(values, torch::kLong); }

}  // namespace

TEST_CASE("topk_margin and selected_mass on a hand-worked 2-token case", "[diagnostics]") {
  const auto probs = torch::tensor({0.5F, 0.3F, 0.2F, 0.1F, 0.6F, 0.3F}).view({2, 3});
  SECTION("top-1: token 0 takes expert 0, token 1 expert 1") {
    const auto m = as_map(selection_diagnostics(probs, longs({0, 1}), longs({0, 1})));
    // margins (0.5 - 0.3) / 0.5 = 0.4 and (0.6 - 0.3) / 0.6 = 0.5; masses 0.5 and 0.6.
    CHECK(m.at("topk_margin") == Approx(0.45));
    CHECK(m.at("selected_mass") == Approx(0.55));
  }
  SECTION("top-2: {0, 1} and {1, 2}") {
    const auto m = as_map(selection_diagnostics(probs, longs({0, 0, 1, 1}), longs({0, 1, 1, 2})));
    // margins (0.3 - 0.2) / 0.3 = 1/3 and (0.3 - 0.1) / 0.3 = 2/3; masses 0.8 and 0.9.
    CHECK(m.at("topk_margin") == Approx(0.5));
    CHECK(m.at("selected_mass") == Approx(0.85));
  }
  SECTION("a choice below an unchosen expert (a bias overrode it) has a negative margin") {
    const auto m = as_map(selection_diagnostics(probs.narrow(0, 0, 1), longs({0}), longs({2})));
    CHECK(m.at("topk_margin") == Approx((0.2 - 0.5) / 0.2));  // -1.5
    CHECK(m.at("selected_mass") == Approx(0.2));
  }
  SECTION("unnormalised rows (sigmoid affinities) count as shares of their sum") {
    const auto m = as_map(selection_diagnostics(torch::tensor({2.0F, 1.0F, 1.0F}).view({1, 3}),
                                                longs({0}), longs({0})));
    CHECK(m.at("selected_mass") == Approx(0.5));
  }
  SECTION("a token with every expert chosen has no margin, one with none has no mass") {
    const auto m = as_map(selection_diagnostics(probs, longs({0, 0, 0}), longs({0, 1, 2})));
    CHECK(m.count("topk_margin") == 0);
    CHECK(m.at("selected_mass") == Approx(0.5));  // token 0: 1, token 1: 0
  }
}

TEST_CASE("load_gini: 0 when equal, (E - 1) / E for one expert, hand-worked in between", "[diagnostics]") {
  CHECK(load_gini(torch::tensor({1.0F, 1.0F, 1.0F, 1.0F})).item<double>() == Approx(0.0).margin(1e-7));
  CHECK(load_gini(torch::tensor({0.0F, 0.0F, 0.0F, 4.0F})).item<double>() == Approx(0.75));
  // [1, 2, 3, 4]: the ordered pairs' gaps add up to 20; 2 x 16 x 2.5 = 80.
  CHECK(load_gini(torch::tensor({1.0F, 2.0F, 3.0F, 4.0F})).item<double>() == Approx(0.25));
  // The scale of the loads does not matter.
  CHECK(load_gini(torch::tensor({10.0F, 20.0F, 30.0F, 40.0F})).item<double>() == Approx(0.25));
}

TEST_CASE("effective_rank: E for orthogonal rows, 1 for collapsed ones, hand-worked between",
          "[diagnostics]") {
  CHECK(effective_rank(torch::eye(4)).item<double>() == Approx(4.0));
  CHECK(effective_rank(torch::eye(4, 16) * 3).item<double>() == Approx(4.0));  // scale-free
  // Every expert's row the same direction: rank one.
  CHECK(effective_rank(torch::ones({8, 16})).item<double>() == Approx(1.0));
  // Singular values 3 and 1: p = (0.75, 0.25), entropy 0.562335, exp = 1.754765.
  CHECK(effective_rank(torch::tensor({3.0F, 0.0F, 0.0F, 1.0F}).view({2, 2})).item<double>() ==
        Approx(1.754765).epsilon(1e-5));
}

TEST_CASE("bias_override_frac: the chosen experts the unbiased top-k would not have chosen",
          "[diagnostics]") {
  RouteResult result;
  RouteContext ctx;
  ctx.collect_metrics = true;
  const auto chosen = longs({0, 1, 2, 3}).view({2, 2});
  // Token 0: the same set in another order (no override); token 1: 3 instead of 1.
  add_bias_metrics(result, torch::zeros({4}), chosen, [] { return longs({1, 0, 2, 1}).view({2, 2}); }, ctx);
  const auto m = as_map(result.metrics);
  CHECK(m.at("bias_override_frac") == Approx(0.25));
  SECTION("padded tokens do not count") {
    RouteResult padded;
    ctx.valid = torch::tensor({true, false});
    add_bias_metrics(padded, torch::zeros({4}), chosen, [] { return longs({1, 0, 2, 1}).view({2, 2}); }, ctx);
    CHECK(as_map(padded.metrics).at("bias_override_frac") == Approx(0.0).margin(1e-7));
  }
}

TEST_CASE("every router reports the diagnostics through the MoE layer", "[diagnostics][registry]") {
  for (const auto& entry : router_registry()) {
    DYNAMIC_SECTION("router " << entry.name) {
      MoELayer layer = testing::registry_layer({std::string("router.name=") + entry.name});
      const int64_t dim = testing::kLayerDim;
      torch::manual_seed(0);
      RoutingRecord record;
      RouteContext ctx = testing::context_for_64_tokens(/*training=*/true);
      ctx.collect_metrics = true;
      ctx.record = &record;
      torch::NoGradGuard no_grad;
      layer->forward(torch::randn({64, dim}), ctx);
      REQUIRE(record.layer_metrics.size() == 1);
      std::map<std::string, double> m;
      for (const auto& [name, value] : record.layer_metrics[0].second) m[name] = value.item<double>();
      CHECK(m.at("load_gini") >= 0.0);
      CHECK(m.at("load_gini") < 1.0);
      // Every router with probabilities and assignments (all but soft routing) is measured.
      const bool soft = entry.name == std::string("soft_moe");
      CHECK(m.count("selected_mass") == (m.count("gate_entropy") && !soft ? 1u : 0u));
      if (m.count("selected_mass")) {
        CHECK(m.at("selected_mass") >= 0.0);
        CHECK(m.at("selected_mass") <= 1.0 + 1e-6);
        REQUIRE(m.count("topk_margin") == 1);
        CHECK(std::isfinite(m.at("topk_margin")));
        CHECK(m.at("topk_margin") <= 1.0 + 1e-6);
      }
      const bool biased = entry.name == std::string("loss_free") || entry.name == std::string("deepseek_v3") ||
                          entry.name == std::string("quantile");
      CHECK(m.count("bias_override_frac") == (biased ? 1u : 0u));
    }
  }
}

}  // namespace moelab
