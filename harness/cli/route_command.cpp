// Router decisions on given logits, batch after batch, as JSON, with the router's state.
#include "harness/cli/route_command.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

#include "harness/config/config.h"
#include "harness/core/exception_text.h"
#include "harness/core/npy.h"
#include "routers/registry.h"

namespace moelab {
namespace {

torch::Tensor read_logits(const std::string& path, int64_t experts) {
  auto logits = read_npy_float32(path);
  if (logits.dim() != 2 || logits.size(0) == 0 || logits.size(1) == 0) {
    throw ConfigError(fmt::format("'{}': router logits must be a non-empty 2-D array [T, E]", path));
  }
  if (experts > 0 && logits.size(1) != experts) {
    throw ConfigError(fmt::format("'{}': {} experts, the first logits file has {}", path,
                                  logits.size(1), experts));
  }
  if (!torch::isfinite(logits).all().item<bool>()) {
    throw ConfigError(fmt::format("'{}': router logits contain NaN or infinite values", path));
  }
  return logits;
}

// The router's buffers (its state between steps) by name, as nested JSON lists.
nlohmann::json state_json(LogitRouter& router) {
  nlohmann::json state = nlohmann::json::object();
  for (const auto& item : router.named_buffers()) {
    const auto values = item.value().to(torch::kCPU, torch::kDouble).contiguous();
    const std::vector<double> flat(values.data_ptr<double>(),
                                   values.data_ptr<double>() + values.numel());
    state[item.key()] = values.dim() == 0 ? nlohmann::json(flat.at(0)) : nlohmann::json(flat);
  }
  return state;
}

// Loads `archive` into the router, refusing a state of another router or another number of
// experts. (The router's own weights, which a decision on given logits does not use, are
// taken as they are.)
void load_state(LogitRouter& router, torch::serialize::InputArchive& archive,
                const std::string& from) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& item : router.named_buffers()) shapes[item.key()] = item.value().sizes().vec();
  try {
    router.load(archive);
  } catch (const std::exception& e) {
    throw ConfigError(fmt::format("{}: not a state of this router ({})", from, exception_text(e)));
  }
  const auto check = [&](const std::string& name, const torch::Tensor& value) {
    if (value.sizes().vec() != shapes.at(name)) {
      throw ConfigError(fmt::format("{}: '{}' has shape [{}], this router's is [{}] (another "
                                    "number of experts?)",
                                    from, name, fmt::join(value.sizes(), ", "),
                                    fmt::join(shapes.at(name), ", ")));
    }
  };
  for (const auto& item : router.named_buffers()) check(item.key(), item.value());
}

void load_checkpoint_router(LogitRouter& router, const std::string& path, int64_t layer) {
  const std::string from = fmt::format("checkpoint '{}', block {}", path, layer);
  torch::serialize::InputArchive checkpoint, block;
  try {
    checkpoint.load_from(path);
    torch::serialize::InputArchive model, backbone, moe;
    checkpoint.read("model", model);
    model.read("backbone", backbone);
    if (!backbone.try_read(fmt::format("block{}", layer), block)) {
      throw ConfigError(fmt::format("{}: the model has no such block", from));
    }
    if (!block.try_read("moe", moe)) {
      throw ConfigError(fmt::format("{}: the block has a dense FFN, no router", from));
    }
    torch::serialize::InputArchive router_archive;
    moe.read("router", router_archive);
    load_state(router, router_archive, from);
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    throw ConfigError(fmt::format("{}: cannot be read ({})", from, exception_text(e)));
  }
}

// The archive key of the router name in a --save-state file.
constexpr const char* kStateRouterKey = "moelab_route_router";

void load_state_file(LogitRouter& router, const std::string& router_name,
                     const std::string& path) {
  torch::serialize::InputArchive archive;
  c10::IValue written_by;
  try {
    archive.load_from(path);
    archive.read(kStateRouterKey, written_by);
  } catch (const std::exception& e) {
    throw ConfigError(fmt::format("state file '{}' cannot be read, or was not written by "
                                  "--save-state ({})",
                                  path, exception_text(e)));
  }
  if (written_by.toStringRef() != router_name) {
    throw ConfigError(fmt::format("state file '{}': not a state of this router (written by "
                                  "router '{}', not '{}')",
                                  path, written_by.toStringRef(), router_name));
  }
  load_state(router, archive, fmt::format("state file '{}'", path));
}

nlohmann::json decision_json(const RouteResult& result, int64_t tokens, int64_t experts) {
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
  out["tokens"] = tokens;
  out["indices"] = indices;
  out["weights"] = weights;
  out["aux"] = nlohmann::json::object();
  for (const auto& [name, loss] : result.aux_losses) out["aux"][name] = loss.item<double>();
  out["metrics"] = nlohmann::json::object();
  for (const auto& [name, value] : result.metrics) out["metrics"][name] = value.item<double>();
  auto load = torch::bincount(expert, {}, experts);
  out["tokens_per_expert"] = std::vector<int64_t>(load.data_ptr<int64_t>(),
                                                  load.data_ptr<int64_t>() + experts);
  return out;
}

}  // namespace

std::string route_json(const RouteRequest& request) {
  if (request.logits_paths.empty()) throw ConfigError("moelab route: give --logits FILE");
  if (!request.state_path.empty() && !request.checkpoint_path.empty()) {
    throw ConfigError("moelab route: --state and --checkpoint both give the starting state; "
                      "pick one");
  }
  if (!request.checkpoint_path.empty() && request.layer < 0) {
    throw ConfigError("moelab route: --checkpoint needs --layer L (the block whose router)");
  }
  std::vector<torch::Tensor> batches = {read_logits(request.logits_paths[0], 0)};
  const int64_t experts = batches[0].size(1);
  for (size_t i = 1; i < request.logits_paths.size(); ++i) {
    batches.push_back(read_logits(request.logits_paths[i], experts));
  }
  std::vector<std::string> overrides = {"router.name=" + request.router,
                                        fmt::format("model.moe.experts={}", experts)};
  for (const auto& option : request.options) overrides.push_back("router." + option);
  RunConfig config = parse_run_config("", "moelab route", overrides);

  const int64_t layer = std::max<int64_t>(request.layer, 0);
  auto router = std::dynamic_pointer_cast<LogitRouter>(
      make_router(config.router, RouterShape{1, experts, request.seed, layer}));
  if (!router) {
    throw ConfigError(fmt::format(
        "router '{}' decides from more than router logits (token representations or token "
        "ids), so `moelab route` cannot run it",
        request.router));
  }
  if (!request.checkpoint_path.empty()) {
    load_checkpoint_router(*router, request.checkpoint_path, request.layer);
  }
  if (!request.state_path.empty()) load_state_file(*router, request.router, request.state_path);

  nlohmann::json out;
  out["router"] = request.router;
  out["experts"] = experts;
  out["training"] = request.training;
  out["state_before"] = state_json(*router);
  out["batches"] = nlohmann::json::array();
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < batches.size(); ++i) {
    RouteContext ctx;
    ctx.training = request.training;
    ctx.seed = request.seed;
    ctx.step = request.step + static_cast<int64_t>(i);
    ctx.group_size = batches[i].size(0);  // a file's T tokens form one routing group
    nlohmann::json batch = decision_json(router->decide(batches[i], ctx), batches[i].size(0), experts);
    if (request.training) router->on_step_end(ctx.step);  // the state update of a training step
    batch["step"] = ctx.step;
    batch["file"] = request.logits_paths[i];
    batch["state"] = state_json(*router);
    out["batches"].push_back(batch);
  }
  for (const auto& [key, value] : out["batches"].back().items()) out[key] = value;  // the last
  if (!request.save_state_path.empty()) {
    torch::serialize::OutputArchive archive;
    router->save(archive);
    archive.write(kStateRouterKey, c10::IValue(request.router));
    archive.save_to(request.save_state_path);
  }
  return out.dump(2) + "\n";
}

}  // namespace moelab
