// Compute accounting (harness/model/flops.h): what the model's parts count in a real forward
// pass, against multiply-adds worked out by hand below (2 FLOPs each), and a trained run's
// train/flops and train/tokens summaries against the same arithmetic for its whole model.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <set>

#include "harness/config/config.h"
#include "harness/model/moe_layer.h"
#include "harness/model/transformer.h"
#include "harness/store/store.h"
#include "routers/registry.h"
#include "test_util.h"

namespace moelab {
namespace {

ModelConfig small_model() {
  ModelConfig model;
  model.dim = 8;
  model.heads = 2;
  model.ffn_hidden = 16;
  model.moe.experts = 4;
  model.moe.expert_hidden = 16;
  model.moe.capacity_factor = 0.0;  // dropless: every assignment runs
  return model;
}

MoELayer topk_layer(const ModelConfig& model, int64_t k) {
  const RunConfig config = parse_run_config("", "flops", {"router.name=topk", "router.k=" + std::to_string(k)});
  auto router = make_router(config.router, RouterShape{model.dim, model.moe.experts, 0, 0});
  return MoELayer(model.dim, model.moe, router);
}

}  // namespace

TEST_CASE("an attention block and a dense FFN count their multiply-adds", "[flops]") {
  const ModelConfig model = small_model();
  Block block(model, /*causal=*/false, BlockFfn{nullptr, model.ffn_hidden});
  RoutingRecord record;
  RouteContext ctx;
  ctx.record = &record;
  torch::NoGradGuard no_grad;
  block->forward(torch::randn({2, 5, 8}), ctx);  // 2 sequences of 5 tokens, width 8
  // Attention on 10 tokens: q,k,v 10x8x24 = 1920 MACs; scores and context 2 x (2 sequences x
  // 5x5x8) = 800 MACs; output 10x8x8 = 640 MACs: 3360 MACs.
  CHECK(record.compute.flops.at("attention") == 2 * 3360.0);
  // FFN 8 -> 16 -> 8 on 10 tokens: 2 x 10x8x16 = 2560 MACs.
  CHECK(record.compute.flops.at("ffn") == 2 * 2560.0);
  CHECK(record.compute.flops.count("experts") == 0);
}

TEST_CASE("an MoE layer counts the experts its tokens used: top-2 twice top-1", "[flops]") {
  const ModelConfig model = small_model();
  const auto x = torch::randn({10, 8});
  torch::NoGradGuard no_grad;
  for (int64_t k : {1, 2}) {
    DYNAMIC_SECTION("top-" << k) {
      MoELayer layer = topk_layer(model, k);
      RoutingRecord record;
      RouteContext ctx;
      ctx.training = true;
      ctx.record = &record;
      layer->forward(x, ctx);
      // 10 k assignments, each an expert 8 -> 16 -> 8 (256 MACs); the gate [4, 8] on 10 tokens
      // (320 MACs) whatever k.
      CHECK(record.compute.flops.at("experts") == 2 * 256.0 * 10 * static_cast<double>(k));
      CHECK(record.compute.flops.at("router") == 2 * 320.0);
    }
  }
}

TEST_CASE("capacity drops and null experts cost no expert compute", "[flops]") {
  ModelConfig model = small_model();
  model.moe.capacity_factor = 0.5;  // capacity ceil(0.5 x 20 / 4) = 3 per expert: 12 of 20 at most
  const auto x = torch::randn({10, 8});
  torch::NoGradGuard no_grad;
  MoELayer layer = topk_layer(model, 2);
  RoutingRecord record;
  RouteContext ctx;
  ctx.training = true;
  ctx.record = &record;
  layer->forward(x, ctx);
  CHECK(record.compute.flops.at("experts") <= 2 * 256.0 * 12);
}

TEST_CASE("a trained run's train/flops and train/tokens follow the arithmetic", "[flops][smoke]") {
  testing::TempDir dir;
  std::ofstream(dir.file("run.yaml")) << R"(name: flops
seed: 1
task: {name: image, patch: 7, train_limit: 256, val_size: 100}
model: {dim: 16, depth: 1, heads: 2, moe: {experts: 4, expert_hidden: 32, capacity_factor: 0}}
router: {name: topk, k: 2}
train: {steps: 2, batch_size: 8, log_every: 1, warmup_steps: 1, eval_every: 0}
eval: {max_examples: 50}
)";
  const std::string db = dir.file("results.db");
  const auto run = testing::run_moelab("run " + dir.file("run.yaml") + " db=" + db +
                                       " checkpoint_dir=" + dir.file("ckpt"));
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  // One step's forward, 8 images of 28x28 in 16 patches of 7x7 (128 tokens), width 16:
  //   patch embedding 128 x 49 x 16 = 100352 MACs; head 8 x 16 x 10 = 1280 MACs;
  //   attention: q,k,v 128x16x48 = 98304, scores and context 2 x 8 x 16x16x16 = 65536,
  //   output 128x16x16 = 32768: 196608 MACs;
  //   router 128 x 16 x 4 = 8192 MACs; experts 256 assignments x 2 x 16x32 = 262144 MACs.
  const double forward = 2.0 * (100352 + 1280 + 196608 + 8192 + 262144);
  Store store(db, Store::Access::ReadOnly);
  const auto summary = [&](const std::string& name) {
    const auto rows = store.query("SELECT value FROM summaries WHERE name = ?", {name});
    REQUIRE(rows.rows.size() == 1);
    return rows.rows[0][0].number();
  };
  CHECK(summary("train/flops") == 2 * 3 * forward);  // 2 steps, backward = 2 forwards
  CHECK(summary("train/tokens") == 2 * 128.0);
  // The router's 4 expert rows of width 16: an effective rank between 1 and 4, the layer's
  // figure and the mean over the one layer alike.
  CHECK(summary("model/moe/l0/router_erank") > 1.0);
  CHECK(summary("model/moe/l0/router_erank") <= 4.0 + 1e-6);
  CHECK(summary("model/moe/router_erank") == summary("model/moe/l0/router_erank"));
  const auto curve = store.query(
      "SELECT step, value FROM metrics WHERE split = 'train' AND name = 'flops' ORDER BY step");
  REQUIRE(curve.rows.size() == 2);
  CHECK(curve.rows[0][1].number() == 3 * forward);  // the curve is cumulative
}

TEST_CASE("a FLOP-budgeted top-p run stops where the arithmetic says, its decay over the budget",
          "[flops][smoke]") {
  testing::TempDir dir;
  constexpr double kBudget = 30e6, kLr = 0.01, kMinRatio = 0.1;
  constexpr int64_t kWarmup = 2;
  std::ofstream(dir.file("run.yaml")) << fmt::format(R"(name: budget
seed: 2
task: {{name: image, patch: 7, train_limit: 256, val_size: 100}}
model: {{dim: 16, depth: 1, heads: 2, moe: {{experts: 4, expert_hidden: 32, capacity_factor: 0}}}}
router: {{name: topp, p: 0.6}}
train: {{steps: 60, budget: {} flops, batch_size: 8, log_every: 1, lr: {}, min_lr_ratio: {},
         warmup_steps: {}, eval_every: 0}}
eval: {{max_examples: 50}}
)",
                                                     kBudget, kLr, kMinRatio, kWarmup);
  const std::string db = dir.file("results.db");
  const auto run = testing::run_moelab("run " + dir.file("run.yaml") + " db=" + db +
                                       " checkpoint_dir=" + dir.file("ckpt"));
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  Store store(db, Store::Access::ReadOnly);
  const auto curve = [&](const std::string& name) {
    std::vector<double> values;
    for (const auto& row : store.query("SELECT value FROM metrics WHERE split = 'train' AND name = ? "
                                       "ORDER BY step",
                                       {name})
                               .rows) {
      values.push_back(row[0].number());
    }
    return values;
  };
  // Each step, as in the test above (8 images, 128 tokens): 306432 MACs outside the experts
  // and 2 x 16 x 32 = 1024 MACs per expert a token used (experts_per_token of the 128);
  // 2 FLOPs a MAC, and training is 3 forwards.
  const std::vector<double> experts_per_token = curve("moe/experts_per_token");
  std::vector<double> spent = {0.0};  // after each step
  for (double k : experts_per_token) spent.push_back(spent.back() + 6.0 * (306432 + 128 * k * 1024));
  size_t stop = 1;
  while (stop < spent.size() && spent[stop] < kBudget) ++stop;
  REQUIRE(stop < spent.size());  // the budget was reached within the logged steps
  CHECK(experts_per_token.size() == stop);  // every step was logged, and none after the stop
  CHECK(std::set<double>(experts_per_token.begin(), experts_per_token.end()).size() > 1);  // k varied
  const auto summary = [&](const std::string& name) {
    const auto rows = store.query("SELECT value FROM summaries WHERE name = ?", {name});
    REQUIRE(rows.rows.size() == 1);
    return rows.rows[0][0].number();
  };
  CHECK(summary("train/steps") == static_cast<double>(stop));
  CHECK(summary("train/flops") == Approx(spent[stop]).epsilon(1e-12));
  CHECK(summary("train/budget_spent") == Approx(spent[stop] / kBudget).epsilon(1e-12));
  // After warm-up, the cosine runs over the budget's FLOPs after warm-up, measured before
  // each step: lr_s = lr (m + (1 - m) (1 + cos(pi (spent_{s-1} - spent_w) / (B - spent_w))) / 2).
  const std::vector<double> lr = curve("lr");
  REQUIRE(lr.size() == stop);
  for (size_t step = kWarmup + 1; step <= stop; ++step) {
    const double done = (spent[step - 1] - spent[kWarmup]) / (kBudget - spent[kWarmup]);
    const double expected = kLr * (kMinRatio + (1 - kMinRatio) * 0.5 * (1 + std::cos(M_PI * done)));
    INFO("step " << step);
    CHECK(lr[step - 1] == Approx(expected).epsilon(1e-9));
  }
}

}  // namespace moelab
