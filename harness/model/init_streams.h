// Parameter initialisation by named streams. The run boundary opens an InitStreams scope with
// the run's seed before it builds the model; each component then calls init_stream("block2")
// before creating its parameters, which reseeds LibTorch's default generator from
// (seed, "init", name). A component's initial values so depend on the seed and its name only,
// not on what was built before it: runs that differ only in the router (whose parameters have
// a stream of their own) start with every other parameter equal (docs/design.md#paired-runs).
// Outside a scope init_stream does nothing (modules built by tests and benchmarks).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace moelab {

class InitStreams {
 public:
  explicit InitStreams(int64_t seed);
  ~InitStreams();
  InitStreams(const InitStreams&) = delete;
  InitStreams& operator=(const InitStreams&) = delete;

 private:
  std::optional<uint64_t> outer_;  // the enclosing scope's seed, restored on exit
};

// Reseeds the default generator for `component`'s parameters (inside an InitStreams scope).
void init_stream(const std::string& component);

}  // namespace moelab
