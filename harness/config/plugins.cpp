// The installed plugin catalog and the config layer's calls through it.
#include "harness/config/plugins.h"

#include "harness/core/error.h"

namespace moelab {
namespace {

PluginCatalog& installed() {
  static PluginCatalog catalog;
  return catalog;
}

const PluginCatalog& catalog() {
  const PluginCatalog& current = installed();
  MOELAB_CHECK(current.router_options && current.task_options && current.validate_router &&
                   current.router_has_logits,
               "no plugin catalog installed: the program's main must call install_plugins() "
               "(harness/run/plugins.h) before reading a config");
  return current;
}

}  // namespace

void install_plugin_catalog(const PluginCatalog& catalog) { installed() = catalog; }

std::unique_ptr<AnyOptions> make_router_options(const std::string& name) {
  return catalog().router_options(name);
}

std::unique_ptr<AnyOptions> make_task_options(const std::string& name) {
  return catalog().task_options(name);
}

void validate_router_options(const std::string& name, const AnyOptions& options, int64_t dim,
                             int64_t experts) {
  catalog().validate_router(name, options, dim, experts);
}

bool router_has_logits(const std::string& name) { return catalog().router_has_logits(name); }

}  // namespace moelab
