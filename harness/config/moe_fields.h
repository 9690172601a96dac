// The two small languages of model.moe, parsed once at load into typed values and written back
// in one canonical spelling (see is_text_value in harness/core/fields.h):
//   model.moe.layers        all | every_other | none | block indices ("1, 3" = "3,1" = "1,3")
//   model.moe.null_experts  KIND[:COUNT] list ("copy,zero:1" = "zero:1,copy:1")
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace moelab {

// Which transformer blocks have an MoE FFN. A list is kept ascending and without repeats;
// after the whole config is read, normalized() names a set by its keyword when it has one at
// the model's depth ("0,1,2,3" at depth 4 is "all"), so that one set has one spelling.
struct LayerSelection {
  enum class Kind { All, EveryOther, None, List };
  Kind kind = Kind::All;
  std::vector<int64_t> blocks;  // Kind::List only: ascending, distinct, >= 0

  static constexpr const char* kTypeName = "block set";
  static LayerSelection parse(const std::string& text);  // ConfigError with the reason
  std::string canonical() const;

  // The block indices at this depth, ascending; ConfigError naming model.moe.layers when a
  // listed block is not below `depth`.
  std::vector<int64_t> resolve(int64_t depth) const;
  // The same set under its canonical name at this depth (all > none > every_other > list).
  LayerSelection normalized(int64_t depth) const;

  bool operator==(const LayerSelection& other) const {
    return kind == other.kind && blocks == other.blocks;
  }
};

// MoE++ null experts beside the FFN experts: how many of each kind. They take the expert
// indices after the FFN experts in the fixed kind order zero, copy, constant, so the layout
// (and the run) depends on the counts only, not on the order or grouping they were written in.
struct NullExperts {
  static constexpr std::array<const char*, 3> kKinds = {"zero", "copy", "constant"};
  static constexpr int64_t kMaxPerKind = 64;
  std::array<int64_t, 3> counts{};  // per kKinds entry

  static constexpr const char* kTypeName = "null expert list";
  static NullExperts parse(const std::string& text);  // ConfigError with the reason
  std::string canonical() const;                      // "zero:1,constant:2"; "" when none

  bool empty() const { return total() == 0; }
  int64_t total() const;
  std::vector<std::string> kinds() const;  // one entry per null expert, in expert-index order
};

}  // namespace moelab
