// Parsing, canonical spelling and resolution of model.moe.layers and model.moe.null_experts.
#include "harness/config/moe_fields.h"

#include <fmt/format.h>

#include <algorithm>

#include "harness/core/error.h"
#include "harness/core/parse.h"

namespace moelab {
namespace {

std::string trimmed(const std::string& text) {
  const auto first = text.find_first_not_of(' ');
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(' ') - first + 1);
}

std::vector<int64_t> every_other_block(int64_t depth) {
  std::vector<int64_t> blocks;
  for (int64_t i = 1; i < depth; i += 2) blocks.push_back(i);
  return blocks;
}

}  // namespace

// ---- LayerSelection ----------------------------------------------------------------------

LayerSelection LayerSelection::parse(const std::string& text) {
  const std::string word = trimmed(text);
  if (word == "all") return {Kind::All, {}};
  if (word == "every_other") return {Kind::EveryOther, {}};
  if (word == "none") return {Kind::None, {}};
  if (word.empty()) throw ConfigError("empty: write none for no MoE block");
  LayerSelection selection{Kind::List, {}};
  for (const auto& item : split_text(word + ",", ',')) {
    const auto block = parse_int64(trimmed(item));
    if (!block || *block < 0) {
      throw ConfigError(fmt::format(
          "'{}' is not all | every_other | none or a comma list of block indices (>= 0)", item));
    }
    if (std::count(selection.blocks.begin(), selection.blocks.end(), *block) != 0) {
      throw ConfigError(fmt::format("block {} is listed twice", *block));
    }
    selection.blocks.push_back(*block);
  }
  std::sort(selection.blocks.begin(), selection.blocks.end());
  return selection;
}

std::string LayerSelection::canonical() const {
  switch (kind) {
    case Kind::All: return "all";
    case Kind::EveryOther: return "every_other";
    case Kind::None: return "none";
    case Kind::List: return fmt::format("{}", fmt::join(blocks, ","));
  }
  throw Error("LayerSelection: unknown kind");
}

std::vector<int64_t> LayerSelection::resolve(int64_t depth) const {
  switch (kind) {
    case Kind::All: {
      std::vector<int64_t> blocks_at_depth;
      for (int64_t i = 0; i < depth; ++i) blocks_at_depth.push_back(i);
      return blocks_at_depth;
    }
    case Kind::EveryOther: return every_other_block(depth);
    case Kind::None: return {};
    case Kind::List:
      if (!blocks.empty() && blocks.back() >= depth) {
        throw ConfigError::at_key(
            "model.moe.layers", fmt::format("\"{}\": block {} is not below model.depth = {} "
                                            "(blocks 0-{})",
                                            canonical(), blocks.back(), depth, depth - 1));
      }
      return blocks;
  }
  throw Error("LayerSelection: unknown kind");
}

LayerSelection LayerSelection::normalized(int64_t depth) const {
  const std::vector<int64_t> set = resolve(depth);
  if (set == LayerSelection{Kind::All, {}}.resolve(depth)) return {Kind::All, {}};
  if (set.empty()) return {Kind::None, {}};
  if (set == every_other_block(depth)) return {Kind::EveryOther, {}};
  return {Kind::List, set};
}

// ---- NullExperts -------------------------------------------------------------------------

NullExperts NullExperts::parse(const std::string& text) {
  NullExperts experts;
  if (trimmed(text).empty()) return experts;
  for (const auto& raw : split_text(text + ",", ',')) {
    const std::string item = trimmed(raw);
    const auto colon = item.find(':');
    const std::string kind = trimmed(item.substr(0, colon));
    const auto count = colon == std::string::npos ? std::optional<int64_t>(1)
                                                  : parse_int64(trimmed(item.substr(colon + 1)));
    const auto known = std::find_if(kKinds.begin(), kKinds.end(),
                                    [&](const char* name) { return kind == name; });
    if (known == kKinds.end() || !count || *count < 1 || *count > kMaxPerKind) {
      throw ConfigError(fmt::format(
          "'{}' is not KIND[:COUNT] with KIND zero, copy or constant and COUNT in [1, {}]", item,
          kMaxPerKind));
    }
    int64_t& total = experts.counts[static_cast<size_t>(known - kKinds.begin())];
    total += *count;
    if (total > kMaxPerKind) {
      throw ConfigError(fmt::format("{} {} null experts: at most {} of a kind", total, kind,
                                    kMaxPerKind));
    }
  }
  return experts;
}

std::string NullExperts::canonical() const {
  std::vector<std::string> items;
  for (size_t i = 0; i < kKinds.size(); ++i) {
    if (counts[i] > 0) items.push_back(fmt::format("{}:{}", kKinds[i], counts[i]));
  }
  return fmt::format("{}", fmt::join(items, ","));
}

int64_t NullExperts::total() const { return counts[0] + counts[1] + counts[2]; }

std::vector<std::string> NullExperts::kinds() const {
  std::vector<std::string> expanded;
  for (size_t i = 0; i < kKinds.size(); ++i) {
    expanded.insert(expanded.end(), static_cast<size_t>(counts[i]), kKinds[i]);
  }
  return expanded;
}

}  // namespace moelab
