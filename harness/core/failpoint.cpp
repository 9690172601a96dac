// Named fault-injection points driven by MOELAB_FAILPOINT (see failpoint.h).
#include "harness/core/failpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "harness/core/parse.h"

namespace moelab {
namespace {

struct FailpointSpec {
  std::string name;
  int signal = SIGKILL;
  int64_t hit = 1;
};

FailpointSpec parse_spec(const char* text) {
  FailpointSpec spec;
  std::string rest = text;
  if (const auto at = rest.find('@'); at != std::string::npos) {
    spec.hit = to_int64(rest.substr(at + 1), "MOELAB_FAILPOINT hit");
    rest.resize(at);
  }
  if (const auto colon = rest.find(':'); colon != std::string::npos) {
    const std::string action = rest.substr(colon + 1);
    if (action == "interrupt") {
      spec.signal = SIGINT;
    } else if (action != "kill") {
      throw ConfigError("MOELAB_FAILPOINT: action '" + action + "' is not kill or interrupt");
    }
    rest.resize(colon);
  }
  spec.name = rest;
  return spec;
}

// False when MOELAB_FAILPOINT_ONCE names a file that exists (the point fired before).
bool claim_once() {
  const char* marker = std::getenv("MOELAB_FAILPOINT_ONCE");
  if (marker == nullptr) return true;
  const int fd = ::open(marker, O_CREAT | O_EXCL | O_WRONLY, 0644);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

}  // namespace

void failpoint(const char* name) {
  static const char* const configured = std::getenv("MOELAB_FAILPOINT");
  if (configured == nullptr) return;
  static const FailpointSpec spec = parse_spec(configured);
  static std::atomic<int64_t> hits{0};
  if (spec.name != name || ++hits != spec.hit || !claim_once()) return;
  ::kill(::getpid(), spec.signal);
}

}  // namespace moelab
