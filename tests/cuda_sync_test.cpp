// Host-sync checks, built only with MOELAB_CUDA=ON (they include CUDA headers): with
// LibTorch's sync debug mode set to error, the routing decision of top-k, and of SSR on a
// step that draws no Sinkhorn, queue their GPU work without waiting for it. The MoE layer's
// dispatch is reported, not asserted: its per-expert slice sizes are read on the host.
#include <c10/cuda/CUDAFunctions.h>

#include "harness/model/moe_layer.h"
#include "routers/registry.h"
#include "test_util.h"

namespace moelab {
namespace {

// Runs body with synchronising CUDA calls turned into errors; the error's text, or "".
template <class Body>
std::string first_sync(Body body) {
  auto& state = c10::cuda::warning_state();
  state.set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
  std::string error;
  try {
    body();
  } catch (const c10::Error& e) {
    error = e.what();
  }
  state.set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
  return error;
}

RouteContext training_context(int64_t step) {
  RouteContext ctx;
  ctx.training = true;
  ctx.step = step;
  ctx.seed = 3;
  ctx.group_size = 256;
  return ctx;
}

}  // namespace

TEST_CASE("top-k and SSR's non-Sinkhorn steps route without a host sync", "[gpu]") {
  REQUIRE(torch::cuda::is_available());
  const torch::Device cuda(torch::kCUDA);
  const int64_t tokens = 4096, dim = 64;
  const std::vector<std::vector<std::string>> configs = {
      {"router.name=topk", "router.k=2"},
      {"router.name=topk", "router.k=2", "router.softmax=before"},
      {"router.name=aux_loss"},
      {"router.name=ssr", "router.p=0"},  // p = 0: every step takes the top-k branch
  };
  for (const auto& overrides : configs) {
    DYNAMIC_SECTION(overrides[0] << " " << overrides.back()) {
      const RunConfig config = parse_run_config("", "sync.yaml", overrides);
      torch::manual_seed(0);
      auto router = make_router(config.router, RouterShape{dim, config.model.moe.experts, 3, 0});
      router->to(cuda);
      const auto x = torch::randn({tokens, dim}, torch::TensorOptions(cuda));  // [T, D]
      router->route(x, training_context(1));  // warm-up: lazy initialisation may sync once
      torch::cuda::synchronize();
      const std::string sync = first_sync([&] { router->route(x, training_context(2)); });
      INFO(sync);
      CHECK(sync.empty());

      MoELayer layer(dim, config.model.moe, router);
      layer->to(cuda);
      layer->forward(x, training_context(3));
      const std::string layer_sync = first_sync([&] { layer->forward(x, training_context(4)); });
      WARN("MoE layer forward (" << overrides[0] << "): "
                                 << (layer_sync.empty() ? "no host sync" : layer_sync.substr(0, 400)));
    }
  }
}

}  // namespace moelab
