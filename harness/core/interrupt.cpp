// The process-wide interrupt flag.
#include "harness/core/interrupt.h"

#include <atomic>

namespace moelab {
namespace {

std::atomic<bool> g_interrupt{false};
static_assert(std::atomic<bool>::is_always_lock_free, "set from a signal handler");

}  // namespace

void request_interrupt() { g_interrupt = true; }
bool interrupt_requested() { return g_interrupt; }
void clear_interrupt_request() { g_interrupt = false; }

void throw_if_interrupted(const std::string& where) {
  if (g_interrupt) throw InterruptedError("interrupted " + where);
}

}  // namespace moelab
