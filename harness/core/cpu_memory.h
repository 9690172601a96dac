// The process's CPU memory policy, set once at start by every program (moelab, the tests):
// glibc's malloc thresholds and LibTorch's CPU allocator. The memory model this gives is in
// docs/design.md#memory.
#pragma once

namespace moelab {

// Call before the first tensor is allocated (tensors allocated earlier keep their deleter, so
// a late call is safe, only less effective).
void configure_cpu_memory();

// Peak resident memory in MiB of this process, or of its largest waited-for child.
double peak_resident_mb();
double peak_child_resident_mb();

}  // namespace moelab
