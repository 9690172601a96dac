// What was built: version and the git state of the source tree at build time.
#pragma once

namespace moelab {
extern const char* const kVersion;
extern const char* const kGitCommit;
extern const bool kGitDirty;
// The source tree the binary was built from (benchmarks find their Python references there).
extern const char* const kSourceDir;
}  // namespace moelab
