// GPU tests, hidden ([.][gpu]): every build compiles them, only a CUDA build registers them
// with CTest (MOELAB_CUDA=ON), and `moelab_tests "[gpu]"` runs them by hand. They need a CUDA
// device and fail without one: whoever asks for them means to test the GPU.
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>

#include "harness/model/moe_layer.h"
#include "harness/store/store.h"
#include "routers/registry.h"
#include "test_util.h"

namespace moelab {
namespace {

const char* kTinyRun = R"(name: gpu
seed: 1
task: {name: image, train_limit: 512, val_size: 500}
model: {dim: 32, depth: 2, heads: 2, moe: {experts: 4, expert_hidden: 32}}
router: {name: topk, k: 2}
train: {steps: 20, batch_size: 32, log_every: 5, warmup_steps: 2, eval_every: 10}
eval: {max_examples: 500}
)";

int moelab_exit_code(const std::string& args) {
  const std::string command = std::string(MOELAB_BINARY) + " " + args + " > /dev/null 2>&1";
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::map<std::string, double> summaries(const std::string& db) {
  Store store(db);
  std::map<std::string, double> out;
  for (const auto& [name, value] : store.summaries(1)) out[name] = value;
  return out;
}

RouteContext context(const torch::Device& device, bool training, int64_t tokens) {
  RouteContext ctx;
  ctx.training = training;
  ctx.step = 1;
  ctx.seed = 3;
  ctx.group_size = 16;
  ctx.collect_metrics = true;
  torch::manual_seed(7);
  ctx.token_ids = torch::randint(0, 1000, {tokens}, torch::kLong).to(device);
  return ctx;
}

}  // namespace

TEST_CASE("every router and the MoE layer run on the GPU, as on the CPU where deterministic",
          "[.][gpu]") {
  REQUIRE(torch::cuda::is_available());
  const torch::Device cpu(torch::kCPU), cuda(torch::kCUDA);
  const int64_t tokens = 64, dim = 16;
  for (const auto& entry : router_registry()) {
    DYNAMIC_SECTION("router " << entry.name) {
      const RunConfig config = parse_run_config("", "defaults.yaml",
                                                {std::string("router.name=") + entry.name});
      auto make_layer = [&] {  // the same seed, the same weights
        torch::manual_seed(1);
        auto router = make_router(config.router, RouterShape{dim, config.model.moe.experts, 3, 0});
        // A router whose gate starts at zero (noisy_topk) ties every expert, and the CPU and
        // the GPU break ties differently: compare from random gate weights instead.
        if (auto* logit_router = dynamic_cast<LogitRouter*>(router.get())) {
          torch::NoGradGuard no_grad;
          auto weight = logit_router->gate()->weight;
          if (weight.abs().max().item<double>() == 0) weight.normal_(0.0, 1.0);
        }
        return MoELayer(dim, config.model.moe, router);
      };
      MoELayer on_cpu = make_layer(), on_gpu = make_layer();
      on_gpu->to(cuda);
      torch::manual_seed(0);
      const auto x = torch::randn({tokens, dim});  // [T, D]

      // Training step on the GPU: output, aux loss, metrics and every gradient stay there.
      torch::manual_seed(5);
      RoutingRecord record;
      RouteContext train_ctx = context(cuda, /*training=*/true, tokens);
      train_ctx.record = &record;
      auto y = on_gpu->forward(x.to(cuda), train_ctx);  // [T, D]
      CHECK(y.device().is_cuda());
      CHECK(torch::isfinite(y).all().item<bool>());
      (y.square().sum() + record.total_aux_loss(cuda)).backward();
      for (const auto& p : on_gpu->parameters()) {
        if (!p.grad().defined()) continue;
        CHECK(p.grad().device().is_cuda());
        CHECK(torch::isfinite(p.grad()).all().item<bool>());
      }
      REQUIRE(record.layer_metrics.size() == 1);
      for (const auto& [name, value] : record.layer_metrics[0].second) {
        INFO("metric " << name);
        CHECK(torch::isfinite(value.to(cpu)).all().item<bool>());
      }

      // Evaluation: where the CPU decision does not depend on the random state, the GPU's
      // output matches it.
      torch::NoGradGuard no_grad;
      torch::manual_seed(11);
      const auto reference = on_cpu->forward(x, context(cpu, false, tokens));
      torch::manual_seed(12);
      const bool deterministic =
          torch::equal(reference, on_cpu->forward(x, context(cpu, false, tokens)));
      const auto on_device = on_gpu->forward(x.to(cuda), context(cuda, false, tokens)).to(cpu);
      INFO("largest difference " << (on_device - reference).abs().max().item<double>());
      if (deterministic) CHECK(torch::allclose(on_device, reference, 1e-4, 1e-5));
    }
  }
}

TEST_CASE("moelab run trains on the GPU to the CPU's numbers, within float tolerance",
          "[.][gpu]") {
  REQUIRE(torch::cuda::is_available());
  testing::TempDir dir;
  std::ofstream(dir.file("tiny.yaml")) << kTinyRun;
  std::map<std::string, std::map<std::string, double>> results;
  for (const std::string device : {"cpu", "cuda"}) {
    const std::string db = dir.file(device + ".db");
    REQUIRE(moelab_exit_code("run " + dir.file("tiny.yaml") + " device=" + device + " db=" + db +
                             " checkpoint_dir=" + dir.file(device)) == 0);
    results[device] = summaries(db);
  }
  for (const char* name : {"train/loss", "val/loss", "test/loss", "test/accuracy"}) {
    INFO(name);
    REQUIRE(results["cpu"].count(name) == 1);
    REQUIRE(results["cuda"].count(name) == 1);
    CHECK(std::abs(results["cuda"][name] - results["cpu"][name]) < 0.02);
  }
}

}  // namespace moelab
