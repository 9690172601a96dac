// The seam between the config layer and the plugin registries: the config only needs to
// create a plugin's typed options by name and to check them against the model.
// Defined in routers/registry.cpp and tasks/registry.cpp.
#pragma once

#include <memory>
#include <string>

#include "harness/fields.h"

namespace moelab {

struct ModelConfig;

// "none" gives empty options (for optional router choices such as eval.router_override).
std::unique_ptr<AnyOptions> make_router_options(const std::string& name);
std::unique_ptr<AnyOptions> make_task_options(const std::string& name);

// Throws ConfigError when a router's options cannot work with the model (k > experts, ...).
void validate_router_options(const std::string& name, const AnyOptions& options,
                             const ModelConfig& model);

}  // namespace moelab
