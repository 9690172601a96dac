// train.budget, parsed once at load into a typed value and written back in one canonical
// spelling (see is_text_value in harness/core/fields.h): none, or an amount of compute in one
// of three units, "400 steps", "2e6 tokens", "1.5e12 flops" ("1.5e12 flops" = "1500e9 flops").
#pragma once

#include <string>

namespace moelab {

// Where a run stops: at train.steps (none), or at the first step whose cumulative cost in the
// unit reaches the amount (train.steps is then a cap). FLOPs and tokens are those the run
// logs as train/flops and train/tokens (harness/model/flops.h).
struct TrainBudget {
  enum class Unit { None, Steps, Tokens, Flops };
  Unit unit = Unit::None;
  double amount = 0;  // > 0 and finite unless Unit::None; a whole number for Unit::Steps

  static constexpr const char* kTypeName = "compute budget";
  static TrainBudget parse(const std::string& text);  // ConfigError with the reason
  std::string canonical() const;                      // "none" | "<amount> <unit>"

  bool set() const { return unit != Unit::None; }
  const char* unit_name() const;  // "steps" | "tokens" | "flops" ("none" when unset)
  // The run's cost so far in this budget's unit.
  double spent(double steps, double tokens, double flops) const;

  bool operator==(const TrainBudget& other) const { return unit == other.unit && amount == other.amount; }
};

}  // namespace moelab
