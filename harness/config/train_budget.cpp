// Parsing and canonical spelling of train.budget.
#include "harness/config/train_budget.h"

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <utility>

#include "harness/core/error.h"
#include "harness/core/parse.h"

namespace moelab {
namespace {

constexpr std::array<std::pair<TrainBudget::Unit, const char*>, 3> kUnits = {{
    {TrainBudget::Unit::Steps, "steps"},
    {TrainBudget::Unit::Tokens, "tokens"},
    {TrainBudget::Unit::Flops, "flops"},
}};

constexpr const char* kForm = "none or '<amount> steps|tokens|flops' (e.g. '1.5e12 flops')";

}  // namespace

TrainBudget TrainBudget::parse(const std::string& text) {
  const auto words = split_text(text, ' ');
  std::vector<std::string> parts;
  for (const auto& word : words) {
    if (!word.empty()) parts.push_back(word);
  }
  if (parts.size() == 1 && parts[0] == "none") return {};
  if (parts.size() != 2) throw ConfigError(fmt::format("'{}' is not {}", text, kForm));
  TrainBudget budget;
  for (const auto& [unit, name] : kUnits) {
    if (parts[1] == name) budget.unit = unit;
  }
  if (budget.unit == Unit::None) {
    throw ConfigError(fmt::format("unknown budget unit '{}': steps, tokens or flops", parts[1]));
  }
  const auto amount = parse_double(parts[0]);
  budget.amount = amount.value_or(0.0);
  if (!amount || !std::isfinite(*amount) || *amount <= 0) {
    throw ConfigError(fmt::format("budget amount '{}' is not a positive number", parts[0]));
  }
  if (budget.unit == Unit::Steps && budget.amount != std::floor(budget.amount)) {
    throw ConfigError(fmt::format("a budget in steps is a whole number, not {}", parts[0]));
  }
  return budget;
}

const char* TrainBudget::unit_name() const {
  for (const auto& [u, name] : kUnits) {
    if (u == unit) return name;
  }
  return "none";
}

std::string TrainBudget::canonical() const {
  if (!set()) return "none";
  return fmt::format("{} {}", amount, unit_name());
}

double TrainBudget::spent(double steps, double tokens, double flops) const {
  switch (unit) {
    case Unit::Steps: return steps;
    case Unit::Tokens: return tokens;
    case Unit::Flops: return flops;
    case Unit::None: return steps;
  }
  throw Error("TrainBudget: unknown unit");
}

}  // namespace moelab
