// Runs an external program (sbatch, squeue, scancel) without a shell: arguments are passed as
// they are, stdout and stderr captured together.
#pragma once

#include <string>
#include <vector>

namespace moelab {

struct CommandResult {
  int exit_code = 0;   // 127: the program was not found; 128 + N: killed by signal N
  std::string output;  // stdout and stderr, interleaved
};

CommandResult run_command(const std::vector<std::string>& argv);

// The program's path when `name` is found on PATH (or is a path to an executable), else "".
std::string find_program(const std::string& name);

}  // namespace moelab
