// Visitors and value codecs behind the typed config field lists (see fields.h).
#include "harness/core/fields.h"
#include "harness/core/yaml_path.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "harness/core/parse.h"

namespace moelab {

// ---- Spec --------------------------------------------------------------------------------

Spec at_least(double lo) {
  Spec s;
  s.min = lo;
  return s;
}
Spec greater_than(double lo) {
  Spec s;
  s.min = lo;
  s.min_exclusive = true;
  return s;
}
Spec in_range(double lo, double hi) {
  Spec s;
  s.min = lo;
  s.max = hi;
  return s;
}
Spec above_up_to(double lo, double hi) {
  Spec s = in_range(lo, hi);
  s.min_exclusive = true;
  return s;
}
Spec one_of(std::vector<std::string> choices) {
  Spec s;
  s.choices = std::move(choices);
  return s;
}
Spec not_hashed() { return Spec{}.unhashed(); }

Spec hashed_when_set() {
  Spec spec;
  spec.hashed_when_set = true;
  return spec;
}

std::string Spec::describe() const {
  if (!choices.empty()) return fmt::format("one of: {}", fmt::join(choices, ", "));
  if (min && max) {
    return fmt::format("in {}{}, {}{}", min_exclusive ? "(" : "[", *min, *max,
                       max_exclusive ? ")" : "]");
  }
  if (min) return fmt::format("{} {}", min_exclusive ? ">" : ">=", *min);
  if (max) return fmt::format("{} {}", max_exclusive ? "<" : "<=", *max);
  return "";
}

std::optional<std::string> Spec::violation(double v) const {
  if (!std::isfinite(v)) return std::string("must be a finite number");
  bool ok = true;
  if (min) ok = ok && (min_exclusive ? v > *min : v >= *min);
  if (max) ok = ok && (max_exclusive ? v < *max : v <= *max);
  if (ok) return std::nullopt;
  return "must be " + describe();
}

std::optional<std::string> Spec::violation(const std::string& v) const {
  if (choices.empty() || std::find(choices.begin(), choices.end(), v) != choices.end()) {
    return std::nullopt;
  }
  std::string hint = nearest_name(v, choices);
  return fmt::format("must be {}{}", describe(),
                     hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint));
}

// ---- value codecs ------------------------------------------------------------------------

namespace detail {

bool ValueCodec<bool>::read(const YAML::Node& n, bool& out) {
  if (!n.IsScalar()) return false;
  const std::string& s = n.Scalar();
  if (s == "true" || s == "True" || s == "yes" || s == "on") {
    out = true;
    return true;
  }
  if (s == "false" || s == "False" || s == "no" || s == "off") {
    out = false;
    return true;
  }
  return false;
}
std::string ValueCodec<bool>::format(bool v) { return v ? "true" : "false"; }

bool ValueCodec<int64_t>::read(const YAML::Node& n, int64_t& out) {
  if (!n.IsScalar()) return false;
  const auto value = parse_int64(n.Scalar());
  if (!value) return false;
  out = *value;
  return true;
}
std::string ValueCodec<int64_t>::format(int64_t v) { return std::to_string(v); }

bool ValueCodec<double>::read(const YAML::Node& n, double& out) {
  if (!n.IsScalar()) return false;
  const std::string& s = n.Scalar();
  try {
    size_t used = 0;
    double v = std::stod(s, &used);
    if (used != s.size()) return false;
    out = v;
    return true;
  } catch (const std::exception&) {
    return false;
  }
}
// fmt's "{}" gives the shortest representation that round-trips exactly.
std::string ValueCodec<double>::format(double v) { return fmt::format("{}", v); }

bool ValueCodec<std::string>::read(const YAML::Node& n, std::string& out) {
  if (n.IsNull()) {
    out.clear();
    return true;
  }
  if (!n.IsScalar()) return false;
  out = n.Scalar();
  return true;
}
std::string ValueCodec<std::string>::format(const std::string& v) { return v; }

bool ValueCodec<std::vector<int64_t>>::read(const YAML::Node& n, std::vector<int64_t>& out) {
  if (!n.IsSequence()) return false;
  std::vector<int64_t> values;
  for (const auto& item : n) {
    int64_t v = 0;
    if (!ValueCodec<int64_t>::read(item, v)) return false;
    values.push_back(v);
  }
  out = std::move(values);
  return true;
}
std::string ValueCodec<std::vector<int64_t>>::format(const std::vector<int64_t>& v) {
  return fmt::format("[{}]", fmt::join(v, ", "));
}

std::optional<std::string> check_value(const Spec&, bool) { return std::nullopt; }
std::optional<std::string> check_value(const Spec& spec, int64_t v) {
  return spec.violation(static_cast<double>(v));
}
std::optional<std::string> check_value(const Spec& spec, double v) { return spec.violation(v); }
std::optional<std::string> check_value(const Spec& spec, const std::string& v) {
  return spec.violation(v);
}
std::optional<std::string> check_value(const Spec& spec, const std::vector<int64_t>& v) {
  for (int64_t item : v) {
    if (auto bad = spec.violation(static_cast<double>(item))) {
      return fmt::format("every element {}", *bad);
    }
  }
  return std::nullopt;
}

}  // namespace detail

// ---- yaml_at_path (harness/core/yaml_path.h) ---

YAML::Node yaml_at_path(const YAML::Node& root, const std::string& path) {
  YAML::Node node = root;
  std::stringstream parts(path);
  for (std::string part; std::getline(parts, part, '.');) {
    if (!node.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    const YAML::Node child = static_cast<const YAML::Node&>(node)[part];  // const: inserts nothing
    if (!child) return YAML::Node(YAML::NodeType::Undefined);
    node.reset(child);  // rebinds (assignment would overwrite the node's content)
  }
  return node;
}

// ---- YamlSource ----------------------------------------------------------------------------

std::string YamlSource::locate(const std::string& path, const YAML::Node& node) const {
  for (const auto& [key, origin] : overrides) {
    if (key == path || key.rfind(path + ".", 0) == 0) {
      return origin;
    }
  }
  std::string where = file.empty() ? "<config>" : file;
  if (node && !node.Mark().is_null()) {
    return fmt::format("{}:{}:{}", where, node.Mark().line + 1, node.Mark().column + 1);
  }
  return where;
}

// ---- YamlReader ---------------------------------------------------------------------------

YamlReader::YamlReader(const YAML::Node& node, const YamlSource& source, std::string prefix)
    : node_(node), source_(source), prefix_(std::move(prefix)) {
  if (node_ && !node_.IsNull() && !node_.IsMap()) {
    std::string section = prefix_.empty() ? "config" : prefix_.substr(0, prefix_.size() - 1);
    throw ConfigError(fmt::format("{}: '{}' must be a map of keys to values",
                                  source_.locate(section, node_), section));
  }
}

YAML::Node YamlReader::lookup(const char* key) {
  known_.emplace_back(key);
  if (!node_ || !node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  const YAML::Node& const_node = node_;
  return const_node[key];
}

void YamlReader::fail_type(const char* key, const YAML::Node& n, const char* type) const {
  std::string shown = n.IsScalar() ? fmt::format("'{}'", n.Scalar())
                                   : (n.IsSequence() ? "a list" : "a map");
  throw ConfigError(fmt::format("{}: {}{} = {}: expected {}", source_.locate(prefix_ + key, n),
                                prefix_, key, shown, type));
}

void YamlReader::fail_rule(const char* key, const YAML::Node& n, const std::string& value,
                           const std::string& rule) const {
  throw ConfigError(fmt::format("{}: {}{} = {}: {}", source_.locate(prefix_ + key, n), prefix_,
                                key, value, rule));
}

void YamlReader::operator()(PluginChoice& field, const char* key, const char* /*help*/,
                            const Spec& /*spec*/) {
  const YAML::Node section = lookup(key);
  const std::string path = prefix_ + key;
  if (section && !section.IsNull() && !section.IsMap()) {
    throw ConfigError(fmt::format("{}: '{}' must be a map with a 'name' key",
                                  source_.locate(path, section), path));
  }
  if (section && section["name"]) {
    if (!detail::ValueCodec<std::string>::read(section["name"], field.name)) {
      fail_type(key, section["name"], "string");
    }
  }
  try {
    field.reset_options();
  } catch (const ConfigError& e) {
    const YAML::Node name_node = section ? section["name"] : YAML::Node();
    throw ConfigError(fmt::format("{}: {}.name: {}", source_.locate(path + ".name", name_node), path,
                                  e.what()));
  }
  YamlReader reader(section, source_, path + ".");
  reader.known_.emplace_back("name");
  field.options->accept(reader);
  reader.reject_unknown_keys();
}

void YamlReader::reject_unknown_keys() const {
  if (!node_ || !node_.IsMap()) return;
  for (const auto& item : node_) {
    const std::string key = item.first.as<std::string>();
    if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
    std::string hint = nearest_name(key, known_);
    std::string section = prefix_.empty() ? "the top level" : "'" + prefix_.substr(0, prefix_.size() - 1) + "'";
    throw ConfigError(fmt::format("{}: unknown key '{}{}' in {}{}; valid keys: {}",
                                  source_.locate(prefix_ + key, item.first), prefix_, key, section,
                                  hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint),
                                  fmt::join(known_, ", ")));
  }
}

// ---- YamlWriter / FieldLister -------------------------------------------------------------

void YamlWriter::emit_scalar(const std::string& text, bool is_string) {
  if (is_string) {
    out_ << YAML::DoubleQuoted << text;
  } else {
    out_ << text;
  }
}

void YamlWriter::operator()(const PluginChoice& field, const char* key, const char* /*help*/,
                            const Spec& /*spec*/) {
  MOELAB_CHECK(field.options != nullptr, "plugin '{}' has no options", key);
  out_ << YAML::Key << key << YAML::Value << YAML::BeginMap;
  out_ << YAML::Key << "name" << YAML::Value;
  emit_scalar(field.name, true);
  field.options->accept(*this);
  out_ << YAML::EndMap;
}

void FieldLister::operator()(const PluginChoice& field, const char* key, const char* help,
                             const Spec& /*spec*/) {
  MOELAB_CHECK(field.options != nullptr, "plugin '{}' has no options", key);
  rows.push_back({prefix_ + key + ".name", "string", field.name, help, "", true});
  FieldLister nested(prefix_ + key + ".");
  field.options->accept(nested);
  for (auto& row : nested.rows) rows.push_back(std::move(row));
}

std::vector<FieldRow> list_fields(AnyOptions& options) {
  FieldLister lister;
  options.accept(lister);
  return lister.rows;
}

// ---- overrides and suggestions ----------------------------------------------------------

void apply_override(YAML::Node& root, const std::string& assignment, YamlSource& source,
                    const std::string& origin) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError(fmt::format("override '{}': expected key=value (e.g. train.lr=0.001)",
                                  assignment));
  }
  const std::string path = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("override '{}': value is not valid YAML: {}", assignment, e.msg));
  }
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '.');) {
    if (part.empty()) throw ConfigError(fmt::format("override '{}': empty key in path", assignment));
    parts.push_back(part);
  }
  if (!root.IsMap()) root = YAML::Node(YAML::NodeType::Map);
  YAML::Node node = root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node child = node[parts[i]];
    if (!child.IsDefined() || child.IsNull()) {
      node[parts[i]] = YAML::Node(YAML::NodeType::Map);
      child.reset(node[parts[i]]);
    } else if (!child.IsMap()) {
      throw ConfigError(fmt::format("override '{}': '{}' is a value, not a section", assignment,
                                    fmt::join(parts.begin(), parts.begin() + i + 1, ".")));
    }
    node.reset(child);
  }
  node[parts.back()] = value;
  source.overrides[path] = origin.empty() ? fmt::format("override '{}'", assignment) : origin;
}

static size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string nearest_name(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, word.size() / 3) + 1;
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  return best;
}

namespace {

std::string yaml_where(const std::string& source, const YAML::Mark& mark) {
  return fmt::format("{}:{}:{}", source, mark.line + 1, mark.column + 1);
}

// The quote opening a quoted scalar at `start` is closed before the end of the text.
bool quote_closed(const std::string& text, size_t start) {
  const char quote = text[start];
  for (size_t i = start + 1; i < text.size(); ++i) {
    if (quote == '"' && text[i] == '\\') {
      ++i;  // an escaped character
    } else if (text[i] == quote) {
      if (quote == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
        ++i;  // '' is a quote inside a single-quoted scalar
      } else {
        return true;
      }
    }
  }
  return false;
}

// What a config may expand to. Aliases repeat the node they point to, so nine levels of ten
// aliases each spell 10^9 nodes in a few hundred bytes; every reader of the tree (this check
// included) would walk them all. Real configs and sweeps are far below these.
constexpr size_t kMaxYamlBytes = size_t{4} << 20;
constexpr int64_t kMaxYamlNodes = 200000;
constexpr int kMaxYamlDepth = 64;

// Checks one document, counting nodes as its readers see them (aliases expanded), so that the
// walk stops at the limits instead of running them to the end.
class YamlChecker {
 public:
  YamlChecker(const std::string& text, const std::string& source) : text_(text), source_(source) {}

  void check(const YAML::Node& node, int depth) {
    count(node, depth);
    if (node.IsScalar()) {
      check_quote(node);
    } else if (node.IsMap()) {
      std::map<std::string, YAML::Mark> seen;
      for (const auto& item : node) {
        check(item.first, depth + 1);
        if (!item.first.IsScalar()) {  // `{a: 1}: 2`: moelab's keys are names
          throw ConfigError(fmt::format("{}: a key must be a name, not a {}",
                                        yaml_where(source_, item.first.Mark()),
                                        item.first.IsMap() ? "mapping" : "list"));
        }
        const std::string key = item.first.Scalar();
        auto [found, inserted] = seen.emplace(key, item.first.Mark());
        if (!inserted) {
          throw ConfigError(fmt::format("{}: duplicate key '{}' (first at line {}); merge the two",
                                        yaml_where(source_, item.first.Mark()), key,
                                        found->second.line + 1));
        }
        check(item.second, depth + 1);
      }
    } else if (node.IsSequence()) {
      for (const auto& item : node) check(item, depth + 1);
    }
  }

 private:
  void count(const YAML::Node& node, int depth) {
    if (depth > kMaxYamlDepth) {
      throw ConfigError(fmt::format("{}: the YAML nests deeper than {} levels",
                                    yaml_where(source_, node.Mark()), kMaxYamlDepth));
    }
    if (++nodes_ > kMaxYamlNodes) {
      throw ConfigError(fmt::format(
          "{}: the YAML expands to more than {} values (an alias repeats everything it names): "
          "a config or sweep file may hold at most that many",
          yaml_where(source_, node.Mark()), kMaxYamlNodes));
    }
    if (node.IsScalar() && (bytes_ += node.Scalar().size()) > kMaxYamlBytes) {
      throw ConfigError(fmt::format("{}: the YAML's values expand to more than {} MiB of text",
                                    yaml_where(source_, node.Mark()), kMaxYamlBytes >> 20));
    }
  }

  void check_quote(const YAML::Node& node) const {
    const auto pos = static_cast<size_t>(node.Mark().pos);
    if (node.Tag() == "!" && pos < text_.size() && (text_[pos] == '"' || text_[pos] == '\'') &&
        !quote_closed(text_, pos)) {
      throw ConfigError(fmt::format("{}: YAML syntax error: the quote {} opened here is never closed",
                                    yaml_where(source_, node.Mark()), text_[pos]));
    }
  }

  const std::string& text_;
  const std::string& source_;
  int64_t nodes_ = 0;
  size_t bytes_ = 0;
};

}  // namespace

YAML::Node load_yaml(const std::string& text, const std::string& source) {
  if (text.size() > kMaxYamlBytes) {
    throw ConfigError(fmt::format("{}: {} bytes: a config or sweep file may be at most {} MiB",
                                  source, text.size(), kMaxYamlBytes >> 20));
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(fmt::format("{}: YAML syntax error: {}", yaml_where(source, e.mark), e.msg));
  }
  YamlChecker(text, source).check(root, 0);
  return root.IsNull() ? YAML::Node(YAML::NodeType::Map) : root;
}

}  // namespace moelab
