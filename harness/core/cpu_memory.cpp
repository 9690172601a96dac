// glibc malloc thresholds and a CPU allocator that does not fragment glibc's heap.
#include "harness/core/cpu_memory.h"

#include <c10/core/CPUAllocator.h>
#include <malloc.h>
#include <sys/resource.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace moelab {
namespace {

// LibTorch's default CPU allocator takes every tensor from posix_memalign(64, n). glibc before
// 2.38 (Debian 12 has 2.36; sourceware bug 14581) splits a small leading remainder off each
// aligned chunk; the remainders sit in the thread cache, never coalesce, and pin the freed
// tensor memory around them, so the heap grows with every differently sized batch: a
// quickstart sweep worker reached 2.9 GB resident with about 100 MB in use. This allocator
// takes the same 64-byte alignment out of plain malloc (over-allocating by the alignment and
// keeping the original pointer in front of the data), whose chunks are freed whole and reused.
//
// Written for both allocator interfaces: LibTorch 1.x declares `allocate` const, 2.3+ declares
// it non-const and adds `copy_data`. The members below are not marked override, so whichever
// the headers declare is overridden and the other is an ordinary member.
class MallocAlignedAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t bytes) const { return allocate_aligned(bytes); }
  c10::DataPtr allocate(size_t bytes) { return allocate_aligned(bytes); }
  void copy_data(void* destination, const void* source, std::size_t count) const {
    std::memcpy(destination, source, count);
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }

 private:
  static constexpr uintptr_t kAlignment = 64;  // c10's gAlignment (AVX-512 loads)

  static c10::DataPtr allocate_aligned(size_t bytes) {
    const c10::Device cpu(c10::DeviceType::CPU);
    if (bytes == 0) return {nullptr, nullptr, &release, cpu};
    void* raw = std::malloc(bytes + kAlignment + sizeof(void*));
    TORCH_CHECK(raw != nullptr, "moelab: out of memory allocating ", bytes, " bytes");
    const auto first = reinterpret_cast<uintptr_t>(raw) + sizeof(void*);
    void* data = reinterpret_cast<void*>((first + kAlignment - 1) & ~(kAlignment - 1));
    std::memcpy(static_cast<char*>(data) - sizeof(void*), &raw, sizeof(void*));
    return {data, data, &release, cpu};
  }

  static void release(void* data) {
    if (data == nullptr) return;
    void* raw = nullptr;
    std::memcpy(&raw, static_cast<char*>(data) - sizeof(void*), sizeof(void*));
    std::free(raw);
  }
};

double max_resident_mb(int who) {
  struct rusage usage {};
  getrusage(who, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

}  // namespace

double peak_resident_mb() { return max_resident_mb(RUSAGE_SELF); }
double peak_child_resident_mb() { return max_resident_mb(RUSAGE_CHILDREN); }

void configure_cpu_memory() {
  // Keep freed tensor memory in the heap instead of returning it to the OS after every step:
  // LibTorch frees and reallocates the same large buffers each step, and glibc's defaults turn
  // that into page faults (quickstart: 8.6 -> 9.2-9.9 steps/s).
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
  static MallocAlignedAllocator allocator;
  c10::SetCPUAllocator(&allocator, /*priority=*/1);  // over LibTorch's default (priority 0)
}

}  // namespace moelab
