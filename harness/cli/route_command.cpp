// Router decision on given logits, as JSON.
#include "harness/cli/route_command.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "harness/config/config.h"
#include "harness/core/npy.h"
#include "routers/registry.h"

namespace moelab {

std::string route_json(const RouteRequest& request) {
  auto logits = read_npy_float32(request.logits_path);
  if (logits.dim() != 2 || logits.size(0) == 0 || logits.size(1) == 0) {
    throw ConfigError(fmt::format("'{}': router logits must be a non-empty 2-D array [T, E]",
                                  request.logits_path));
  }
  if (!torch::isfinite(logits).all().item<bool>()) {
    throw ConfigError(fmt::format("'{}': router logits contain NaN or infinite values",
                                  request.logits_path));
  }
  const int64_t tokens = logits.size(0), experts = logits.size(1);
  std::vector<std::string> overrides = {"router.name=" + request.router,
                                        fmt::format("model.moe.experts={}", experts)};
  for (const auto& option : request.options) overrides.push_back("router." + option);
  RunConfig config = parse_run_config("", "moelab route", overrides);

  auto router = std::dynamic_pointer_cast<LogitRouter>(
      make_router(config.router, RouterShape{1, experts, request.seed, 0}));
  if (!router) {
    throw ConfigError(fmt::format(
        "router '{}' decides from more than router logits (token representations or token "
        "ids), so `moelab route` cannot run it",
        request.router));
  }
  RouteContext ctx;
  ctx.training = request.training;
  ctx.seed = request.seed;
  ctx.step = request.step;
  ctx.group_size = tokens;  // the file's T tokens form one routing group
  torch::NoGradGuard no_grad;
  RouteResult result = router->decide(logits, ctx);

  nlohmann::json indices = nlohmann::json::array(), weights = nlohmann::json::array();
  for (int64_t t = 0; t < tokens; ++t) {
    indices.push_back(nlohmann::json::array());
    weights.push_back(nlohmann::json::array());
  }
  auto token = result.token.to(torch::kCPU), expert = result.expert.to(torch::kCPU);
  auto weight = result.weight.to(torch::kCPU, torch::kDouble);
  for (int64_t a = 0; a < token.numel(); ++a) {
    const int64_t t = token[a].item<int64_t>();
    indices[t].push_back(expert[a].item<int64_t>());
    weights[t].push_back(weight[a].item<double>());
  }
  nlohmann::json out;
  out["router"] = request.router;
  out["tokens"] = tokens;
  out["experts"] = experts;
  out["training"] = request.training;
  out["indices"] = indices;
  out["weights"] = weights;
  out["aux"] = nlohmann::json::object();
  for (const auto& [name, loss] : result.aux_losses) out["aux"][name] = loss.item<double>();
  out["metrics"] = nlohmann::json::object();
  for (const auto& [name, value] : result.metrics) out["metrics"][name] = value.item<double>();
  auto load = torch::bincount(expert, {}, experts);
  out["tokens_per_expert"] = std::vector<int64_t>(load.data_ptr<int64_t>(),
                                                  load.data_ptr<int64_t>() + experts);
  return out.dump(2) + "\n";
}

}  // namespace moelab
