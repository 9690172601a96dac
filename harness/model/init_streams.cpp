// Named initialisation streams: a scope's seed, and the reseeding of the default generator.
#include "harness/model/init_streams.h"

#include <torch/utils.h>

#include "harness/core/rng.h"

namespace moelab {
namespace {

thread_local std::optional<uint64_t> t_scope_seed;

}  // namespace

InitStreams::InitStreams(int64_t seed) : outer_(t_scope_seed) {
  t_scope_seed = static_cast<uint64_t>(seed);
  init_stream("");  // draws outside any named component come from the unnamed stream
}

InitStreams::~InitStreams() { t_scope_seed = outer_; }

void init_stream(const std::string& component) {
  if (!t_scope_seed) return;
  const uint64_t seed = *t_scope_seed;
  torch::manual_seed(component.empty() ? derived_seed({seed, fnv1a("init")})
                                       : derived_seed({seed, fnv1a("init"), fnv1a(component)}));
}

}  // namespace moelab
