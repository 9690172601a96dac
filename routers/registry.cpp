// Every registered router, in one explicit list. Registry names are part of the interface
// (configs, sweeps and the results database refer to them).
#include "routers/registry.h"

#include "harness/registry.h"
#include "routers/topk.h"

namespace moelab {
namespace {

template <class R>
RouterEntry router_entry(const char* name, const char* summary) {
  using Options = typename R::Options;
  return RouterEntry{
      name,
      summary,
      []() -> std::unique_ptr<AnyOptions> { return std::make_unique<TypedOptions<Options>>(); },
      [](const AnyOptions& options, const RouterShape& shape) -> std::shared_ptr<Router> {
        return std::make_shared<R>(options_as<Options>(options), shape);
      },
      [](const AnyOptions& options, const ModelConfig& model) {
        options_as<Options>(options).check(model);
      }};
}

}  // namespace

const std::vector<RouterEntry>& router_registry() {
  static const std::vector<RouterEntry> entries = {
      router_entry<TopKRouter>("topk", "softmax token choice: each token takes its k best experts"),
  };
  return entries;
}

const RouterEntry& find_router(const std::string& name) {
  return find_entry(router_registry(), name, "router");
}

std::shared_ptr<Router> make_router(const PluginChoice& choice, const RouterShape& shape) {
  return find_router(choice.name).make(*choice.options, shape);
}

std::unique_ptr<AnyOptions> make_router_options(const std::string& name) {
  return find_router(name).make_options();
}

void validate_router_options(const std::string& name, const AnyOptions& options,
                             const ModelConfig& model) {
  find_router(name).validate(options, model);
}

}  // namespace moelab
