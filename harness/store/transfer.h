// Moving results between databases: `moelab db copy SRC DST` (every run, with its id, into an
// empty database) and `moelab db merge A B ... -o OUT` (runs from several machines into one).
// Written against the Store interface only, so they work between any two backends the Store
// supports. Inputs are opened read-only and must be of this moelab's schema version (the
// Store's read-only open refuses other versions, naming the file and what to do).
#pragma once

#include <string>
#include <vector>

#include "harness/store/store.h"

namespace moelab {

struct MergeReport {
  int64_t copied = 0;      // runs written to the output
  // Done runs whose config hash the output already had done, and other runs the output already
  // had (the same config, host and creation time): kept once.
  int64_t duplicates = 0;
  int64_t unfinished = 0;  // pending or running runs: not copied (they belong to a live queue)
  // A duplicate whose summaries (timings aside) differ from the kept run's: "<file> run <id> (<hash>): <name>
  // <value> vs <kept value> in run <kept id>". The first run seen is kept.
  std::vector<std::string> conflicts;
  std::string text() const;  // what the command prints
};

// Runs of `inputs`, in order (each in id order), into `output` (created if missing; runs it
// already holds count as seen first). Every input's runs land in one transaction.
MergeReport merge_databases(const std::vector<std::string>& inputs, const std::string& output);

// Every run of `source` with its id into `destination`, which must hold no runs. Returns the
// number of runs copied.
int64_t copy_database(const std::string& source, const std::string& destination);

}  // namespace moelab
