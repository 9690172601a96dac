// The seam between the config layer and the plugin registries: the config only needs to
// create a plugin's typed options by name and to check them against the model.
// Defined in routers/registry.cpp and tasks/registry.cpp.
#pragma once

#include <memory>
#include <string>

#include "harness/core/fields.h"

namespace moelab {

// "none" gives empty options (for optional router choices such as eval.router_override).
std::unique_ptr<AnyOptions> make_router_options(const std::string& name);
std::unique_ptr<AnyOptions> make_task_options(const std::string& name);

// Throws ConfigError when a router's options cannot work with MoE layers of width `dim` and
// `experts` experts (k > experts, ...): routers see the layer's shape, not the whole config.
void validate_router_options(const std::string& name, const AnyOptions& options, int64_t dim,
                             int64_t experts);

}  // namespace moelab
