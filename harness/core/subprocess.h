// Runs an external program (sbatch, squeue, scancel) without a shell: arguments are passed as
// they are, stdout and stderr captured together; and whether a process is alive.
#pragma once

#include <string>
#include <vector>

namespace moelab {

struct CommandResult {
  int exit_code = 0;   // 127: the program was not found; 128 + N: killed by signal N
  std::string output;  // stdout and stderr, interleaved
};

CommandResult run_command(const std::vector<std::string>& argv);

// Whether process `pid` exists and is not a zombie (a killed worker whose parent died stays a
// zombie in containers whose init does not reap).
bool process_alive(int pid);

// The program's path when `name` is found on PATH (or is a path to an executable), else "".
std::string find_program(const std::string& name);

}  // namespace moelab
