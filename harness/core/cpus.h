// The CPUs this process may use: its affinity mask, bounded by a cgroup CPU quota (cgroup v2
// cpu.max, or v1 cpu.cfs_quota_us / cpu.cfs_period_us), as a container or a Slurm allocation
// sets them. What `moelab sweep` sizes its default worker count by.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace moelab {

struct CpuBudget {
  int64_t affinity = 1;                // CPUs in the affinity mask
  std::optional<double> quota;         // cgroup quota in CPUs; nullopt = none
  int64_t usable() const;              // min(affinity, floor(quota)), at least 1
  std::string describe() const;        // "2 CPUs (affinity 2, no cgroup quota)"
};

CpuBudget cpu_budget();

// A cgroup v2 cpu.max text ("max 100000", "150000 100000") -> CPUs; nullopt for "max" or
// text that does not parse.
std::optional<double> parse_cpu_max(const std::string& text);

}  // namespace moelab
