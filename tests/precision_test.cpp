// train.precision = bf16: autocast reaches the experts but not the router, which decides from
// fp32 logits; the weights and their gradients stay fp32; a 20-step bf16 run stays within a
// stated tolerance of the fp32 run, and is not the fp32 run.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <cmath>
#include <fstream>

#include "harness/config/config.h"
#include "harness/model/moe_layer.h"
#include "harness/model/precision.h"
#include "harness/store/store.h"
#include "routers/registry.h"
#include "test_util.h"

namespace moelab {
namespace {

// A real top-2 router that keeps what it last returned.
class ObservedRouter : public Router {
 public:
  explicit ObservedRouter(std::shared_ptr<Router> inner) : inner_(register_module("inner", std::move(inner))) {}
  RouteResult route(const torch::Tensor& x, const RouteContext& ctx) override {
    last = inner_->route(x, ctx);
    return last;
  }
  RouteResult last;

 private:
  std::shared_ptr<Router> inner_;
};

std::shared_ptr<ObservedRouter> observed_topk(int64_t dim, int64_t experts) {
  const RunConfig config = parse_run_config("", "precision", {"router.name=topk", "router.k=2"});
  return std::make_shared<ObservedRouter>(make_router(config.router, RouterShape{dim, experts, 0, 0}));
}

}  // namespace

TEST_CASE("under bf16 autocast the experts run in bf16 and the router decides from fp32 logits",
          "[precision]") {
  torch::manual_seed(4);
  MoeConfig moe;
  moe.experts = 8;
  moe.expert_hidden = 64;
  moe.capacity_factor = 0.0;
  auto router = observed_topk(32, moe.experts);
  MoELayer layer(32, moe, router);
  const auto x = torch::randn({512, 32});  // [T, D]
  RouteContext ctx;

  const auto fp32_out = layer->forward(x, ctx);  // [T, D]
  const auto fp32_expert = router->last.expert.clone();
  torch::Tensor bf16_out;
  {
    AutocastGuard autocast(Precision::Bf16, torch::kCPU);
    bf16_out = layer->forward(x, ctx);
    // The control: outside the layer's fp32 region the same router computes bf16 logits.
    CHECK(router->route(x, ctx).logits.scalar_type() == torch::kBFloat16);
    router->last = RouteResult{};
    layer->forward(x, ctx);
  }
  CHECK(router->last.logits.scalar_type() == torch::kFloat);
  CHECK(router->last.weight.scalar_type() == torch::kFloat);
  CHECK(router->last.expert.equal(fp32_expert));  // the same decisions as in fp32
  // The experts' products were bf16: the output moved, by bf16's rounding (8 bits of mantissa).
  const double scale = fp32_out.abs().max().item<double>();
  const double moved = (as_fp32(bf16_out) - fp32_out).abs().max().item<double>();
  CHECK(moved > 0);
  CHECK(moved < 0.05 * scale);
}

TEST_CASE("bf16 keeps fp32 master weights: parameters and their gradients stay fp32", "[precision]") {
  torch::manual_seed(5);
  MoeConfig moe;
  moe.experts = 4;
  moe.expert_hidden = 16;
  MoELayer layer(16, moe, observed_topk(16, moe.experts));
  RouteContext ctx;
  ctx.training = true;
  torch::Tensor out;
  {
    AutocastGuard autocast(Precision::Bf16, torch::kCPU);
    out = layer->forward(torch::randn({64, 16}), ctx);
  }
  as_fp32(out).pow(2).mean().backward();
  for (const auto& parameter : layer->named_parameters()) {
    INFO(parameter.key());
    CHECK(parameter.value().scalar_type() == torch::kFloat);
    if (parameter.value().grad().defined()) CHECK(parameter.value().grad().scalar_type() == torch::kFloat);
  }
  CHECK(!autocast_enabled(torch::kCPU));  // the guard restored the state it found
}

TEST_CASE("a 20-step bf16 run stays within 0.02 of the fp32 run's loss at every step",
          "[precision][smoke]") {
  testing::TempDir dir;
  std::ofstream(dir.file("run.yaml")) << R"(name: precision
seed: 3
task: {name: image, train_limit: 512, val_size: 100}
model: {dim: 32, depth: 2, heads: 2, moe: {experts: 4, expert_hidden: 32}}
router: {name: topk, k: 2}
train: {steps: 20, batch_size: 32, log_every: 1, warmup_steps: 2, eval_every: 0}
eval: {max_examples: 200}
)";
  const auto losses = [&](const std::string& precision) {
    const std::string db = dir.file(precision + ".db");
    const auto run = testing::run_moelab(fmt::format("run {} db={} checkpoint_dir={} train.precision={}",
                                                     dir.file("run.yaml"), db, dir.file(precision), precision));
    INFO(run.output);
    REQUIRE(run.exit_code == 0);
    Store store(db, Store::Access::ReadOnly);
    std::vector<double> values;
    for (const auto& row :
         store.query("SELECT value FROM metrics WHERE split = 'train' AND name = 'loss' ORDER BY step").rows) {
      values.push_back(row[0].number());
    }
    return values;
  };
  const auto fp32 = losses("fp32"), bf16 = losses("bf16");
  REQUIRE(fp32.size() == 20);
  REQUIRE(bf16.size() == 20);
  double largest = 0;
  for (size_t i = 0; i < fp32.size(); ++i) largest = std::max(largest, std::abs(fp32[i] - bf16[i]));
  INFO("largest |loss_bf16 - loss_fp32| over the 20 steps: " << largest);
  CHECK(largest > 0);     // bf16 really ran
  CHECK(largest < 0.02);  // the stated tolerance (docs/design.md, Precision)
}

}  // namespace moelab
