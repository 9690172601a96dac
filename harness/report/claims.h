// `moelab claims FILE`: what papers say, declared in experiments/claims/*.yaml, tested on the
// results database. Each claim names its source (paper and sentence), the sweep, the metric,
// the treatment and baseline groups, the claimed direction, the margin δ fixed before running
// and the pairing key; it is tested by the paired comparison of harness/report/compare.h, the
// p-values Holm-adjusted over the file's claims, and given a verdict:
//   supported      the claimed direction, shown (adjusted p < α, the interval on that side)
//   contradicted   the opposite direction, shown
//   not supported  shown equivalent within ±δ (TOST), where a difference was claimed
//   inconclusive   none of these: the n, the interval and the MDE say how far it got
// with a scale banner (parameters, tokens, FLOPs, steps of the runs) so that a CPU-scale check
// is not read as a replication. A claim whose runs are missing names them and the command that
// produces them.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "harness/core/fields.h"
#include "harness/store/store.h"

namespace moelab {

// One claim as the file declares it.
struct Claim {
  std::string id;
  std::string paper;     // "arXiv 2511.08972 (SSR)"
  std::string quote;     // the sentence claimed, as the paper words it
  std::string sweep;     // the sweep whose runs test it
  std::string sweep_file;  // the file that produces them; "" = experiments/sweeps/<sweep>.yaml
  std::string metric;    // SPLIT/METRIC, a metric the sweep's task declares
  std::string group_by = "router";
  std::string treatment, baseline;  // group labels
  std::string direction = "higher";  // higher | lower | equivalent (treatment vs baseline)
  double margin = 0.0;               // δ > 0, in the metric's units, fixed before running
  std::string pair_by = "seed";
  double at_flops = 0.0;  // > 0: compared at this many training FLOPs (the logged curve)

  template <class V>
  void visit(V& v) {
    v(id, "id", "a short name, unique in the file");
    v(paper, "paper", "the source: paper and version");
    v(quote, "quote", "the sentence of the paper that is claimed");
    v(sweep, "sweep", "the sweep whose runs test it");
    v(sweep_file, "sweep_file", "the sweep file that produces those runs (default experiments/sweeps/SWEEP.yaml)");
    v(metric, "metric", "SPLIT/METRIC, e.g. test/accuracy");
    v(group_by, "group_by", "config keys that form the groups (router = router.name)");
    v(treatment, "treatment", "the group the paper's method is");
    v(baseline, "baseline", "the group it is compared with");
    v(direction, "direction", "the claimed difference, treatment - baseline", one_of({"higher", "lower", "equivalent"}));
    v(margin, "margin", "equivalence margin delta in the metric's units, fixed before running", greater_than(0));
    v(pair_by, "pair_by", "config keys whose equal values pair runs (default seed)");
    v(at_flops, "at_flops", "compare at this many training FLOPs (0: at the end of training)", at_least(0));
  }
};

struct ClaimsFile {
  std::string path;
  std::vector<Claim> claims;
};

// Reads and checks a claims file: ConfigError with file:line:column for a missing or unknown
// key, a bad value, a repeated id; and, against `store`, for a sweep that has neither runs nor
// a sweep file, a metric its task does not declare, or a group that is not a value of group_by
// (a router or task that does not exist).
ClaimsFile read_claims(const std::string& path, Store& store);

struct Scale {
  std::optional<double> parameters, tokens, flops, steps;  // per run, the mean; unknown: none
  int64_t runs = 0;
};

struct ClaimResult {
  Claim claim;
  std::string verdict;  // supported | contradicted | not supported | inconclusive | missing runs
  int64_t n = 0;        // pairs (or runs of the treatment when unpaired)
  bool paired = false;
  double effect = 0, ci_low = 0, ci_high = 0;  // treatment - baseline, 95 % interval
  double p = 0, p_adjusted = 0, mde = 0, p_equivalence = 0;
  bool equivalent = false;  // shown within ±margin (TOST; unpaired: the 90 % interval)
  Scale scale;
  std::string missing;  // for "missing runs": what is missing and the command that makes it
};

std::vector<ClaimResult> test_claims(Store& store, const ClaimsFile& file, double alpha = 0.05);

// format: text | md | json | html.
std::string render_claims(const std::vector<ClaimResult>& results, const ClaimsFile& file,
                          const std::string& db, const std::string& format);

}  // namespace moelab
