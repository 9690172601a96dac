// Fault injection for the crash tests: named points at the moments a crash must not corrupt
// the record (after the final checkpoint, between final-evaluation splits, while the run's end
// is being written, ...). Inert unless the environment names one:
//
//   MOELAB_FAILPOINT=<name>[:kill|:interrupt][@<hit>]
//     kill (default): SIGKILL to this process, as a power cut or the OOM killer would;
//     interrupt: SIGINT to this process, as Ctrl-C would;
//     @<hit>: at the hit-th time the point is reached (default 1).
//   MOELAB_FAILPOINT_ONCE=<file>: fire only if <file> does not exist yet, and create it, so
//     that a restarted sweep worker inheriting the environment runs through.
#pragma once

namespace moelab {

// Reached at a named moment; acts only when MOELAB_FAILPOINT names this point.
void failpoint(const char* name);

}  // namespace moelab
