// Affinity and cgroup quota.
#include "harness/core/cpus.h"

#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>

namespace moelab {
namespace {

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// cgroup v1: quota and period in microseconds; a quota of -1 means none.
std::optional<double> cgroup_v1_quota() {
  std::istringstream quota_text(first_line("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"));
  std::istringstream period_text(first_line("/sys/fs/cgroup/cpu/cpu.cfs_period_us"));
  double quota = 0, period = 0;
  if (!(quota_text >> quota) || !(period_text >> period) || quota <= 0 || period <= 0) return std::nullopt;
  return quota / period;
}

}  // namespace

std::optional<double> parse_cpu_max(const std::string& text) {
  std::istringstream in(text);
  std::string quota;
  double period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return std::nullopt;
  try {
    size_t used = 0;
    const double value = std::stod(quota, &used);
    if (used != quota.size() || value <= 0) return std::nullopt;
    return value / period;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

int64_t CpuBudget::usable() const {
  int64_t cpus = std::max<int64_t>(affinity, 1);
  if (quota) cpus = std::min<int64_t>(cpus, static_cast<int64_t>(std::floor(*quota)));
  return std::max<int64_t>(cpus, 1);
}

std::string CpuBudget::describe() const {
  return fmt::format("{} CPU{} (affinity {}, {})", usable(), usable() == 1 ? "" : "s", affinity,
                     quota ? fmt::format("cgroup quota {:g} CPUs", *quota) : "no cgroup quota");
}

CpuBudget cpu_budget() {
  CpuBudget budget;
  cpu_set_t set;
  CPU_ZERO(&set);
  budget.affinity = sched_getaffinity(0, sizeof(set), &set) == 0
                        ? CPU_COUNT(&set)
                        : static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  budget.quota = parse_cpu_max(first_line("/sys/fs/cgroup/cpu.max"));
  if (!budget.quota) budget.quota = cgroup_v1_quota();
  return budget;
}

}  // namespace moelab
