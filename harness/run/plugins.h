// Installs the router and task registries as the config layer's plugin catalog
// (harness/config/plugins.h). Every program that reads a config calls it first, once.
#pragma once

namespace moelab {

void install_plugins();

}  // namespace moelab
