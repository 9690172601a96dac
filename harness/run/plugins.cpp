// The registries (routers/registry.h, tasks/registry.h) as the config layer's catalog.
#include "harness/run/plugins.h"

#include "harness/config/plugins.h"
#include "routers/registry.h"
#include "tasks/registry.h"

namespace moelab {

void install_plugins() {
  install_plugin_catalog({&router_options_by_name, &task_options_by_name, &check_router_options,
                          &router_decides_from_logits});
}

}  // namespace moelab
