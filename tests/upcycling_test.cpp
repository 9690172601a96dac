// Upcycling and structured pruning (convert.method copy, granular, drop_upcycling, prune):
// the upcycled layer against the dense FFN it came from, under normalised and unweighted gates
// and, per token, under every router of the registry; Drop-Upcycling's re-initialised neurons
// and their statistics; the pruning importance against arithmetic written out here; the
// config rules; and each method end to end from a dense parent.
#include <cmath>
#include <map>
#include <set>

#include "harness/config/config.h"
#include "harness/convert/pruning.h"
#include "harness/convert/upcycling.h"
#include "harness/model/moe_layer.h"
#include "harness/run/runner.h"
#include "harness/sweep/dense_parent.h"
#include "convert_run.h"
#include "registry_layer.h"
#include "routers/registry.h"
#include "test_util.h"

namespace moelab {
namespace {

const int64_t kDim = testing::kLayerDim;
const int64_t kDense = 32;  // the dense FFN's hidden width

torch::nn::Sequential random_ffn(int64_t hidden) {
  torch::nn::Sequential ffn(torch::nn::Linear(kDim, hidden), torch::nn::GELU(),
                            torch::nn::Linear(hidden, kDim));
  torch::NoGradGuard no_grad;
  for (auto& p : ffn->parameters()) p.normal_(0.0, 0.3);
  return ffn;
}

torch::Tensor w1(torch::nn::Sequential& f) { return f->ptr<torch::nn::LinearImpl>(0)->weight; }
torch::Tensor b1(torch::nn::Sequential& f) { return f->ptr<torch::nn::LinearImpl>(0)->bias; }
torch::Tensor w2(torch::nn::Sequential& f) { return f->ptr<torch::nn::LinearImpl>(2)->weight; }
torch::Tensor b2(torch::nn::Sequential& f) { return f->ptr<torch::nn::LinearImpl>(2)->bias; }

// The conversion's steps for one layer: tie the groups, measure the gate sum, load.
void upcycle(MoELayer& layer, torch::nn::Sequential& dense, const torch::Tensor& x) {
  const int64_t g = upcycling_granularity(*layer, kDense);
  tie_router_groups(*layer, g);
  load_upcycled(*layer, w1(dense), b1(dense), w2(dense), b2(dense), g,
                route_averages(*layer, x).gate_sum);
}

}  // namespace

TEST_CASE("copy and granular upcycling start as the dense FFN", "[convert][upcycle]") {
  struct Case {
    const char* what;
    std::vector<std::string> overrides;
  };
  const std::vector<Case> cases = {
      {"copy, topk k=2 of 4", {"router.name=topk", "router.k=2", "model.moe.experts=4",
                               "model.moe.expert_hidden=32"}},
      {"copy, dot_moe k=2 of 4 (unweighted sum)", {"router.name=dot_moe", "router.k=2",
                                                   "model.moe.experts=4", "model.moe.expert_hidden=32"}},
      {"granular g=4, topk k=4 of 8 (one group)", {"router.name=topk", "router.k=4",
                                                   "model.moe.experts=8", "model.moe.expert_hidden=8"}},
      {"granular g=4, topk k=8 of 16 (two groups)", {"router.name=topk", "router.k=8",
                                                     "model.moe.experts=16", "model.moe.expert_hidden=8"}},
      {"granular g=4, softmax before without renormalising", {"router.name=topk", "router.k=4",
                                                               "router.softmax=before",
                                                               "router.renormalize=false",
                                                               "model.moe.experts=4",
                                                               "model.moe.expert_hidden=8"}},
      {"granular g=2, dot_moe k=2 of 8", {"router.name=dot_moe", "router.k=2",
                                          "model.moe.experts=8", "model.moe.expert_hidden=16"}},
  };
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.what) {
      torch::manual_seed(11);
      MoELayer layer = testing::registry_layer(c.overrides);
      auto dense = random_ffn(kDense);
      const auto x = torch::randn({64, kDim});
      upcycle(layer, dense, x);
      torch::NoGradGuard no_grad;
      const auto y = layer->forward(x, RouteContext{});
      const auto expected = dense->forward(x);
      INFO("max |y - dense| = " << (y - expected).abs().max().item<double>());
      CHECK(torch::allclose(y, expected, 1e-5, 1e-5));
    }
  }
}

TEST_CASE("granular slices: expert e holds slice e mod g, output weights scaled by g over the gate sum",
          "[convert][upcycle]") {
  torch::manual_seed(12);
  MoELayer layer = testing::registry_layer({"router.name=dot_moe", "router.k=4", "model.moe.experts=8",
                                            "model.moe.expert_hidden=8"});
  auto dense = random_ffn(kDense);
  load_upcycled(*layer, w1(dense), b1(dense), w2(dense), b2(dense), /*granularity=*/4, /*gate_sum=*/4.0);
  const ExpertWeights w = layer->expert_weights();
  for (int64_t e = 0; e < 8; ++e) {
    const int64_t first = (e % 4) * 8;
    INFO("expert " << e);
    CHECK(torch::equal(w.w_in[e], w1(dense).narrow(0, first, 8).t()));
    CHECK(torch::equal(w.b_in[e], b1(dense).narrow(0, first, 8)));
    CHECK(torch::allclose(w.w_out[e], w2(dense).narrow(1, first, 8).t()));  // x 4 / 4
    CHECK(torch::allclose(w.b_out[e], b2(dense) / 4.0));
  }
}

TEST_CASE("a copy-upcycled layer gives every token the dense output times its gate sum, under every router",
          "[convert][upcycle][registry]") {
  for (const auto& entry : router_registry()) {
    DYNAMIC_SECTION("router " << entry.name) {
      torch::manual_seed(13);
      MoELayer layer = testing::registry_layer({std::string("router.name=") + entry.name,
                                                "model.moe.experts=4", "model.moe.expert_hidden=32"});
      auto dense = random_ffn(kDense);
      const auto x = torch::randn({64, kDim});
      RouteContext ctx = testing::context_for_64_tokens(/*training=*/false);
      double gate_sum = 0.0;
      try {
        gate_sum = route_averages(*layer, x, ctx).gate_sum;
      } catch (const Error& e) {
        CHECK(std::string(e.what()).find("soft_moe") != std::string::npos);
        CHECK(std::string(entry.name) == "soft_moe");
        continue;
      }
      load_upcycled(*layer, w1(dense), b1(dense), w2(dense), b2(dense), 1, gate_sum);
      torch::NoGradGuard no_grad;
      const RouteResult route = layer->router().route(x, ctx);
      const auto per_token = torch::zeros({64}).index_add_(0, route.token, route.weight.to(torch::kFloat));
      const auto expected = dense->forward(x) * (per_token / gate_sum).unsqueeze(1);
      CHECK(torch::allclose(layer->forward(x, ctx), expected, 1e-5, 1e-5));
    }
  }
}

TEST_CASE("drop-upcycling re-initialises floor(r s) neurons of each expert from the dense statistics",
          "[convert][upcycle]") {
  torch::manual_seed(14);
  const std::vector<std::string> copy = {"router.name=topk", "model.moe.experts=8",
                                         "model.moe.expert_hidden=32"};
  MoELayer layer = testing::registry_layer(copy);
  auto dense = random_ffn(kDense);
  load_upcycled(*layer, w1(dense), b1(dense), w2(dense), b2(dense), 1, 1.0);
  const ExpertWeights w = layer->expert_weights();
  const auto before_in = w.w_in.clone(), before_b = w.b_in.clone(), before_out = w.w_out.clone();
  const auto dropped = drop_reinitialise(*layer, 0.5, 99);
  REQUIRE(dropped.sizes() == std::vector<int64_t>{8, 16});  // floor(0.5 x 32)
  std::set<std::vector<int64_t>> distinct;
  for (int64_t e = 0; e < 8; ++e) {
    std::set<int64_t> chosen;
    for (int64_t j : testing::as_vector(dropped[e])) chosen.insert(j);
    distinct.insert(testing::as_vector(dropped[e]));
    REQUIRE(chosen.size() == 16);
    for (int64_t j = 0; j < 32; ++j) {
      const bool changed_in = !torch::equal(w.w_in[e].select(1, j), before_in[e].select(1, j));
      const bool changed_b = w.b_in[e][j].item<float>() != before_b[e][j].item<float>();
      const bool changed_out = !torch::equal(w.w_out[e][j], before_out[e][j]);
      INFO("expert " << e << " neuron " << j);
      CHECK(changed_in == (chosen.count(j) == 1));
      CHECK(changed_b == (chosen.count(j) == 1));
      CHECK(changed_out == (chosen.count(j) == 1));
    }
  }
  CHECK(distinct.size() > 1);  // every expert draws its own neurons
  // The new input weights follow N(mean, std^2) of the dense w1: 8 x 16 x 16 = 2048 draws.
  std::vector<torch::Tensor> fresh;
  for (int64_t e = 0; e < 8; ++e) fresh.push_back(w.w_in[e].index_select(1, dropped[e]).flatten());
  const auto drawn = torch::cat(fresh);
  const double dense_mean = w1(dense).mean().item<double>(), dense_std = w1(dense).std().item<double>();
  CHECK(std::abs(drawn.mean().item<double>() - dense_mean) < 4 * dense_std / std::sqrt(2048.0));
  CHECK(drawn.std().item<double>() == Approx(dense_std).epsilon(0.08));
  // Seeded: the same seed draws the same neurons and values.
  MoELayer again = testing::registry_layer(copy);
  load_upcycled(*again, w1(dense), b1(dense), w2(dense), b2(dense), 1, 1.0);
  CHECK(torch::equal(drop_reinitialise(*again, 0.5, 99), dropped));
  CHECK(torch::equal(again->expert_weights().w_in, w.w_in));
}

TEST_CASE("pruning importance: mean |GELU activation| times the output weight norm, written out",
          "[convert][prune]") {
  torch::manual_seed(15);
  const int64_t dim = 3, hidden = 5, tokens = 4;
  auto a = torch::randn({hidden, dim}), bias = torch::randn({hidden}), c = torch::randn({dim, hidden});
  auto x = torch::randn({tokens, dim});
  const auto importance = neuron_importance(a, bias, c, x);
  for (int64_t j = 0; j < hidden; ++j) {
    double activation = 0.0;
    for (int64_t t = 0; t < tokens; ++t) {
      double z = bias[j].item<double>();
      for (int64_t d = 0; d < dim; ++d) z += x[t][d].item<double>() * a[j][d].item<double>();
      activation += std::abs(0.5 * z * (1.0 + std::erf(z / std::sqrt(2.0)))) / tokens;
    }
    double norm = 0.0;
    for (int64_t d = 0; d < dim; ++d) norm += c[d][j].item<double>() * c[d][j].item<double>();
    CHECK(importance[j].item<double>() == Approx(activation * std::sqrt(norm)).epsilon(1e-5));
  }
  CHECK(testing::as_vector(kept_neurons(torch::tensor({0.1, 0.5, 0.3, 0.9, 0.2}), 2)) ==
        std::vector<int64_t>{1, 3});
}

TEST_CASE("a pruned FFN is the dense FFN without the dropped neurons", "[convert][prune]") {
  torch::manual_seed(16);
  auto dense = random_ffn(kDense);
  auto pruned = random_ffn(12);
  const auto x = torch::randn({20, kDim});
  const auto kept = kept_neurons(neuron_importance(w1(dense), b1(dense), w2(dense), x), 12);
  load_pruned(pruned, w1(dense), b1(dense), w2(dense), b2(dense), kept);
  // The dense FFN with the other neurons' output weights zeroed.
  auto mask = torch::zeros({kDense});
  mask.index_fill_(0, kept, 1.0);
  torch::NoGradGuard no_grad;
  const auto expected = torch::matmul(torch::gelu(torch::matmul(x, w1(dense).t()) + b1(dense)) * mask,
                                      w2(dense).t()) + b2(dense);
  CHECK(torch::allclose(pruned->forward(x), expected, 1e-5, 1e-5));
}

TEST_CASE("upcycling and pruning config errors name the rule", "[convert][config]") {
  const std::string base =
      "model: {ffn_hidden: 64, moe: {experts: 8, expert_hidden: 16}}\n"
      "router: {name: topk, k: 4}\nconvert: {method: granular}\n";
  CHECK_NOTHROW(parse_run_config(base, "t.yaml"));  // g = 4, two copies of each slice
  CHECK_THAT(testing::config_error(base, {"model.moe.experts=6"}),
             Catch::Matchers::Contains("a multiple of g"));
  CHECK_THAT(testing::config_error(base, {"model.moe.expert_hidden=24"}),
             Catch::Matchers::Contains("g x model.moe.expert_hidden"));
  CHECK_THAT(testing::config_error(base, {"convert.method=copy"}),
             Catch::Matchers::Contains("use granular"));
  CHECK_THAT(testing::config_error(base, {"model.moe.expert_hidden=64"}),
             Catch::Matchers::Contains("one slice per expert is copy"));
  CHECK_THAT(testing::config_error(base, {"convert.method=drop_upcycling", "convert.drop_ratio=1.5"}),
             Catch::Matchers::Contains("convert.drop_ratio"));
  CHECK_THAT(testing::config_error(base, {"convert.method=prune", "model.moe.experts=4"}),
             Catch::Matchers::Contains("dot_moe"));
  CHECK_THAT(testing::config_error(base, {"convert.method=prune", "router.name=dot_moe",
                                          "model.moe.experts=4", "router.k=4"}),
             Catch::Matchers::Contains("keeps every one of the 64 neurons"));
  CHECK_THAT(testing::config_error(base, {"model.moe.router_dtype=fp16"}),
             Catch::Matchers::Contains("fp64"));
  // New fields at their defaults leave every identity as it was.
  const RunConfig drop = parse_run_config(base, "t.yaml", {"convert.method=drop_upcycling"});
  CHECK(config_hash(drop) == config_hash(parse_run_config(base, "t.yaml", {"convert.method=drop_upcycling",
                                                                          "convert.drop_ratio=0.5"})));
  CHECK(config_hash(drop) != config_hash(parse_run_config(base, "t.yaml", {"convert.method=drop_upcycling",
                                                                          "convert.drop_ratio=0.25"})));
  const RunConfig plain = parse_run_config("", "t.yaml");
  CHECK(config_hash(plain) == config_hash(parse_run_config("", "t.yaml", {"model.moe.router_dtype=fp32"})));
  CHECK(config_hash(plain) != config_hash(parse_run_config("", "t.yaml", {"model.moe.router_dtype=fp64"})));
}

TEST_CASE("upcycling and pruning end to end: converted from the dense parent, measured, retained",
          "[convert][upcycle][prune][smoke]") {
  testing::TempDir dir;
  // The shared converting run as granular upcycling into 8 experts of 8 (g = 4), top-4.
  const std::vector<std::string> where = {"db=" + dir.file("u.db"), "checkpoint_dir=" + dir.file("ckpt"),
                                          "model.moe.experts=8", "router.k=4",
                                          "convert.method=granular"};
  struct Case {
    const char* what;
    std::vector<std::string> overrides;
    bool exact;              // the converted FFN is the dense one at step 0
    double ffn_fraction;     // active FFN neurons per token over the dense FFN's
  };
  const std::vector<Case> cases = {
      {"granular g=4, k=4 of 8: one whole group", {}, true, 1.0},
      {"copy, topk k=2 of 4", {"convert.method=copy", "router.name=topk", "router.k=2",
                               "model.moe.experts=4", "model.moe.expert_hidden=32"}, true, 2.0},
      {"granular, one step at lr 1e-12: the model is its dense parent",
       {"train.steps=1", "train.lr=1e-12", "train.warmup_steps=0"}, true, 1.0},
      {"drop_upcycling on the granular layout", {"convert.method=drop_upcycling"}, false, 1.0},
      {"prune to k x s = 16 of 32 neurons", {"convert.method=prune", "router.k=2",
                                              "model.moe.experts=4"}, false, 0.5},
  };
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.what) {
      auto overrides = where;
      overrides.insert(overrides.end(), c.overrides.begin(), c.overrides.end());
      RunOutcome outcome = run_alone(parse_run_config(testing::kConvertRun, "up.yaml", overrides));
      INFO(outcome.error);
      REQUIRE(outcome.status == RunStatus::Done);
      std::map<std::string, double> summary(outcome.summaries.begin(), outcome.summaries.end());
      REQUIRE(summary.count("convert/recon_err") == 1);
      if (c.exact) {
        CHECK(summary.at("convert/recon_err") < 1e-10);
      } else {
        CHECK(summary.at("convert/recon_err") > 1e-3);
      }
      CHECK(summary.count("convert/recon_err_oracle") == 0);
      CHECK(summary.count("export/recon_err") == 1);
      CHECK(summary.count("retention/test/accuracy") == 1);
      CHECK(summary.at("export/ffn_active_fraction") == Approx(c.ffn_fraction));
      if (std::string(c.what).find("lr 1e-12") != std::string::npos) {  // whole-model outputs
        CHECK(summary.at("retention/test/accuracy") == 1.0);
        CHECK(summary.at("retention/test/loss") == Approx(1.0).epsilon(1e-6));
      }
    }
  }
}

}  // namespace moelab
