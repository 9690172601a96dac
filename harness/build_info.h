// What was built: version and the git state of the source tree at build time.
#pragma once

namespace moelab {
extern const char* const kVersion;
extern const char* const kGitCommit;
extern const bool kGitDirty;
}  // namespace moelab
