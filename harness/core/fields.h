// Typed configuration through one field list per struct (gemma.cpp's visitor idea).
// A config struct lists its fields once:
//
//   template <class V> void visit(V& v) {
//     v(steps, "steps", "optimizer steps", at_least(1));
//     v(moe, "moe", "mixture-of-experts layers");          // nested struct
//   }
//
// and every visitor below reuses that list: YamlReader (parse + validate + reject unknown
// keys), YamlWriter (canonical dump and hash input), FieldLister (help, flattened params).
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "harness/core/error.h"

namespace moelab {

// Validation rule and metadata attached to one field.
struct Spec {
  std::optional<double> min, max;
  bool min_exclusive = false;
  bool max_exclusive = false;
  std::vector<std::string> choices;
  bool hashed = true;  // false: does not change results (paths, threads); left out of the run identity
  // A section added after run identities were first recorded: left out of the hash while it
  // is entirely at its defaults, so the identities of configs that do not use it stay valid.
  bool hashed_when_set = false;
  // A field added after run identities were first recorded: left out of the hash while its
  // canonical value is this one (its default), for the same reason.
  std::optional<std::string> hashed_unless;

  Spec unhashed() const {
    Spec s = *this;
    s.hashed = false;
    return s;
  }
  std::string describe() const;                       // "> 0", "in [0, 1]", "one of: a, b"
  std::optional<std::string> violation(double) const;  // nullopt if the value is allowed
  std::optional<std::string> violation(const std::string&) const;
};

Spec at_least(double lo);
Spec greater_than(double lo);
Spec in_range(double lo, double hi);  // closed interval
Spec above_up_to(double lo, double hi);  // (lo, hi]
Spec one_of(std::vector<std::string> choices);
Spec not_hashed();
Spec hashed_when_set();

class YamlReader;
class YamlWriter;
class FieldLister;

// Type-erased typed options of a plugin (router or task), so a RunConfig can hold any of them.
class AnyOptions {
 public:
  virtual ~AnyOptions() = default;
  virtual void accept(YamlReader& v) = 0;
  virtual void accept(YamlWriter& v) = 0;
  virtual void accept(FieldLister& v) = 0;
};

template <class T>
class TypedOptions final : public AnyOptions {
 public:
  T value;
  void accept(YamlReader& v) override { value.visit(v); }
  void accept(YamlWriter& v) override { value.visit(v); }
  void accept(FieldLister& v) override { value.visit(v); }
};

template <class T>
const T& options_as(const AnyOptions& options) {
  auto* typed = dynamic_cast<const TypedOptions<T>*>(&options);
  MOELAB_CHECK(typed != nullptr, "plugin options have an unexpected type");
  return typed->value;
}

// A plugin chosen by name plus its typed options, e.g. `router: {name: topk, k: 2}`.
struct PluginChoice {
  using OptionsFactory = std::unique_ptr<AnyOptions> (*)(const std::string& name);
  std::string name;
  OptionsFactory make_options = nullptr;  // throws ConfigError listing the known names
  std::shared_ptr<AnyOptions> options;    // null until read or reset_options()

  void reset_options() { options = make_options(name); }
};

namespace detail {
template <class T, class = void>
struct is_struct_config : std::false_type {};
template <class T>
struct is_struct_config<T, std::void_t<decltype(std::declval<T&>().template visit<YamlReader>(
                               std::declval<YamlReader&>()))>> : std::true_type {};

// A field whose YAML value is text in a small language (a block list, an attack list): its
// type parses the text once, at load (`static T parse(const std::string&)`, ConfigError with
// the reason), and writes it back in one canonical spelling (`std::string canonical() const`),
// so that the run identity is a function of the meaning, not of the spelling.
template <class T, class = void>
struct is_text_value : std::false_type {};
template <class T>
struct is_text_value<T, std::void_t<decltype(T::parse(std::string())),
                                    decltype(std::declval<const T&>().canonical())>>
    : std::true_type {};

template <class T, class = void>
struct ValueCodec;  // read/write/format/type name for each scalar field type
template <>
struct ValueCodec<bool> {
  static const char* type_name() { return "bool"; }
  static bool read(const YAML::Node& n, bool& out);
  static std::string format(bool v);
};
template <>
struct ValueCodec<int64_t> {
  static const char* type_name() { return "int"; }
  static bool read(const YAML::Node& n, int64_t& out);
  static std::string format(int64_t v);
};
template <>
struct ValueCodec<double> {
  static const char* type_name() { return "float"; }
  static bool read(const YAML::Node& n, double& out);
  static std::string format(double v);
};
template <>
struct ValueCodec<std::string> {
  static const char* type_name() { return "string"; }
  static bool read(const YAML::Node& n, std::string& out);
  static std::string format(const std::string& v);
};
template <>
struct ValueCodec<std::vector<int64_t>> {
  static const char* type_name() { return "int list"; }
  static bool read(const YAML::Node& n, std::vector<int64_t>& out);
  static std::string format(const std::vector<int64_t>& v);
};

template <class T>
struct ValueCodec<T, std::enable_if_t<is_text_value<T>::value>> {
  static const char* type_name() { return T::kTypeName; }
  // false when the node is not a scalar; text the language refuses throws ConfigError.
  static bool read(const YAML::Node& n, T& out) {
    std::string text;
    if (!ValueCodec<std::string>::read(n, text)) return false;
    out = T::parse(text);
    return true;
  }
  static std::string format(const T& v) { return v.canonical(); }
};

std::optional<std::string> check_value(const Spec& spec, bool);
std::optional<std::string> check_value(const Spec& spec, int64_t v);
std::optional<std::string> check_value(const Spec& spec, double v);
std::optional<std::string> check_value(const Spec& spec, const std::string& v);
std::optional<std::string> check_value(const Spec& spec, const std::vector<int64_t>& v);
template <class T, class = std::enable_if_t<is_text_value<T>::value>>
std::optional<std::string> check_value(const Spec& spec, const T& v) {
  return check_value(spec, v.canonical());
}
}  // namespace detail

template <class T>
Spec hashed_unless(const T& default_value, Spec spec = {}) {
  spec.hashed_unless = detail::ValueCodec<T>::format(default_value);
  return spec;
}

// Where a YAML value came from, for error messages: "file.yaml:12:5", "override 'k=v'", or
// the place in another file an override was written (a sweep's axis or base).
struct YamlSource {
  std::string file;                                 // config file name ("" if none)
  std::map<std::string, std::string> overrides;     // dotted path -> where it was set
  std::string locate(const std::string& path, const YAML::Node& node) const;
};

// Parses a YAML map into a config struct, validating every field and rejecting unknown keys.
class YamlReader {
 public:
  YamlReader(const YAML::Node& node, const YamlSource& source, std::string prefix);

  template <class T>
  void operator()(T& field, const char* key, const char* /*help*/, const Spec& spec = {}) {
    const YAML::Node child = lookup(key);
    if constexpr (detail::is_struct_config<T>::value) {
      read_struct(child, source_, prefix_ + key + ".", field);
    } else {
      if (child) read_value(child, key, field);
      if (auto bad = detail::check_value(spec, field)) {
        fail_rule(key, child, detail::ValueCodec<T>::format(field), *bad);
      }
    }
  }
  void operator()(PluginChoice& field, const char* key, const char* help, const Spec& spec = {});

  // Fails on any key of the map that no field consumed, suggesting the nearest valid key.
  void reject_unknown_keys() const;

  template <class T>
  static void read_struct(const YAML::Node& node, const YamlSource& source,
                          const std::string& prefix, T& out) {
    YamlReader reader(node, source, prefix);
    out.visit(reader);
    reader.reject_unknown_keys();
  }

 private:
  YAML::Node lookup(const char* key);
  template <class T>
  void read_value(const YAML::Node& child, const char* key, T& field) {
    bool read = false;
    try {
      read = detail::ValueCodec<T>::read(child, field);
    } catch (const ConfigError& e) {  // a text value its language refuses
      fail_rule(key, child, child.Scalar(), e.what());
    }
    if (!read) fail_type(key, child, detail::ValueCodec<T>::type_name());
  }
  [[noreturn]] void fail_type(const char* key, const YAML::Node& n, const char* type) const;
  [[noreturn]] void fail_rule(const char* key, const YAML::Node& n, const std::string& value,
                              const std::string& rule) const;

  YAML::Node node_;
  const YamlSource& source_;
  std::string prefix_;
  std::vector<std::string> known_;
  std::vector<std::string> skip_;  // keys consumed by a plugin's name field
};

template <class T>
std::string canonical_yaml(T& config, bool hashed_only = false);

// Emits the canonical YAML of a config: fields in list order, numbers in shortest
// round-trip form. With hashed_only, fields marked unhashed are left out (the hash input).
class YamlWriter {
 public:
  explicit YamlWriter(YAML::Emitter& out, bool hashed_only = false)
      : out_(out), hashed_only_(hashed_only) {}

  template <class T>
  void operator()(const T& field, const char* key, const char* /*help*/, const Spec& spec = {}) {
    if (hashed_only_ && !spec.hashed) return;
    if constexpr (detail::is_struct_config<T>::value) {
      if (hashed_only_ && spec.hashed_when_set && at_defaults(field)) return;
    } else {
      if (hashed_only_ && spec.hashed_unless &&
          detail::ValueCodec<T>::format(field) == *spec.hashed_unless) {
        return;
      }
    }
    out_ << YAML::Key << key << YAML::Value;
    if constexpr (detail::is_struct_config<T>::value) {
      out_ << YAML::BeginMap;
      const_cast<T&>(field).visit(*this);
      out_ << YAML::EndMap;
    } else {
      emit_scalar(detail::ValueCodec<T>::format(field),
                  std::is_same_v<T, std::string> || detail::is_text_value<T>::value);
    }
  }
  void operator()(const PluginChoice& field, const char* key, const char* help,
                  const Spec& spec = {});

 private:
  void emit_scalar(const std::string& text, bool is_string);
  template <class T>
  static bool at_defaults(const T& field) {
    T defaults;
    return canonical_yaml(const_cast<T&>(field)) == canonical_yaml(defaults);
  }
  YAML::Emitter& out_;
  bool hashed_only_;
};

// One row per leaf field: used for `list -v`, help text and the flattened params table.
struct FieldRow {
  std::string path;
  std::string type;
  std::string value;
  std::string help;
  std::string rule;
  bool hashed = true;
};

class FieldLister {
 public:
  explicit FieldLister(std::string prefix = "") : prefix_(std::move(prefix)) {}

  template <class T>
  void operator()(const T& field, const char* key, const char* help, const Spec& spec = {}) {
    if constexpr (detail::is_struct_config<T>::value) {
      FieldLister nested(prefix_ + key + ".");
      const_cast<T&>(field).visit(nested);
      for (auto& row : nested.rows) rows.push_back(std::move(row));
    } else {
      rows.push_back({prefix_ + key, detail::ValueCodec<T>::type_name(),
                      detail::ValueCodec<T>::format(field), help, spec.describe(), spec.hashed});
    }
  }
  void operator()(const PluginChoice& field, const char* key, const char* help,
                  const Spec& spec = {});

  std::vector<FieldRow> rows;

 private:
  std::string prefix_;
};


// Canonical YAML of any config struct or plugin options.
template <class T>
std::string canonical_yaml(T& config, bool hashed_only) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  YamlWriter writer(out, hashed_only);
  config.visit(writer);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

template <class T>
std::vector<FieldRow> list_fields(T& config) {
  FieldLister lister;
  config.visit(lister);
  return lister.rows;
}

std::vector<FieldRow> list_fields(AnyOptions& options);

// Sets a dotted path in a YAML tree from "key=value" text (value parsed as YAML). Errors
// about the key name `origin` ("sweep.yaml:4:3") when given, else "override 'key=value'".
void apply_override(YAML::Node& root, const std::string& assignment, YamlSource& source,
                    const std::string& origin = "");

// Levenshtein-nearest candidate within a small distance, or "".
std::string nearest_name(const std::string& word, const std::vector<std::string>& candidates);

// The YAML document `text` (from `source`, named in errors), an empty map when it is empty.
// Beyond yaml-cpp's own syntax errors, refuses what it accepts silently: a key twice in one
// mapping (yaml-cpp keeps the first) and a quoted scalar never closed (yaml-cpp runs it to
// the end of the text), and keys that are not names (`{a: 1}: 2`); and bounds what the text
// may expand to (aliases counted as often as they are used): 4 MiB of text and of values,
// 200000 values, 64 levels. ConfigError with source:line:column.
YAML::Node load_yaml(const std::string& text, const std::string& source);

}  // namespace moelab
