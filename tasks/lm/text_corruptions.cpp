// Word- and character-level text corruptions.
#include "tasks/lm/text_corruptions.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <iterator>
#include <set>
#include <sstream>
#include <tuple>
#include <unordered_map>

#include "harness/core/error.h"
#include "harness/core/parse.h"
#include "harness/core/rng.h"
#include "harness/core/sampler.h"

namespace moelab {
namespace {

const char* const kKinds[] = {"aaa", "swap", "substitute", "delete", "insert", "qwerty", "char"};

// NLTK's English stopword list (179 words), the list TextAttack's StopwordModification uses.
const std::set<std::string>& stopwords() {
  static const std::set<std::string> words = {
      "i", "me", "my", "myself", "we", "our", "ours", "ourselves", "you", "you're", "you've",
      "you'll", "you'd", "your", "yours", "yourself", "yourselves", "he", "him", "his",
      "himself", "she", "she's", "her", "hers", "herself", "it", "it's", "its", "itself",
      "they", "them", "their", "theirs", "themselves", "what", "which", "who", "whom", "this",
      "that", "that'll", "these", "those", "am", "is", "are", "was", "were", "be", "been",
      "being", "have", "has", "had", "having", "do", "does", "did", "doing", "a", "an", "the",
      "and", "but", "if", "or", "because", "as", "until", "while", "of", "at", "by", "for",
      "with", "about", "against", "between", "into", "through", "during", "before", "after",
      "above", "below", "to", "from", "up", "down", "in", "out", "on", "off", "over", "under",
      "again", "further", "then", "once", "here", "there", "when", "where", "why", "how", "all",
      "any", "both", "each", "few", "more", "most", "other", "some", "such", "no", "nor", "not",
      "only", "own", "same", "so", "than", "too", "very", "s", "t", "can", "will", "just",
      "don", "don't", "should", "should've", "now", "d", "ll", "m", "o", "re", "ve", "y",
      "ain", "aren", "aren't", "couldn", "couldn't", "didn", "didn't", "doesn", "doesn't",
      "hadn", "hadn't", "hasn", "hasn't", "haven", "haven't", "isn", "isn't", "ma", "mightn",
      "mightn't", "mustn", "mustn't", "needn", "needn't", "shan", "shan't", "shouldn",
      "shouldn't", "wasn", "wasn't", "weren", "weren't", "won", "won't", "wouldn", "wouldn't"};
  return words;
}

const std::unordered_map<char, std::string>& qwerty_neighbours() {
  static const std::unordered_map<char, std::string> table = {
      {'q', "was"},   {'w', "qeasd"},  {'e', "wsdfr"},  {'r', "edfgt"},   {'t', "rfghy"},
      {'y', "tghju"}, {'u', "yhjki"},  {'i', "ujklo"},  {'o', "iklp"},    {'p', "ol"},
      {'a', "qwszx"}, {'s', "qweadzx"}, {'d', "werfcxs"}, {'f', "ertgvcd"}, {'g', "rtyhbvd"},
      {'h', "tyugjbn"}, {'j', "yuikmnh"}, {'k', "uiolmj"}, {'l', "iopk"},  {'z', "asx"},
      {'x', "sdzc"},  {'c', "xdfv"},   {'v', "cfgb"},   {'b', "vghn"},    {'n', "bhjm"},
      {'m', "njk"}};
  return table;
}

char random_letter(Rng& rng) {
  static const char* const kLetters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  return kLetters[rng.below(52)];
}

bool is_core_char(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }
bool is_inner_char(unsigned char c) { return c == '\'' || c == '-' || c == '*' || c == '@'; }

using WordEdit = std::function<std::string(const std::string&, Rng&)>;

std::string swap_neighbours(const std::string& w, Rng& rng) {
  std::string out = w;
  const auto i = static_cast<size_t>(rng.below(static_cast<int64_t>(w.size()) - 1));
  std::swap(out[i], out[i + 1]);
  return out;
}
std::string substitute(const std::string& w, Rng& rng) {
  std::string out = w;
  out[static_cast<size_t>(rng.below(static_cast<int64_t>(w.size())))] = random_letter(rng);
  return out;
}
std::string delete_char(const std::string& w, Rng& rng) {
  std::string out = w;
  out.erase(static_cast<size_t>(rng.below(static_cast<int64_t>(w.size()))), 1);
  return out;
}
std::string insert_char(const std::string& w, Rng& rng) {
  std::string out = w;
  const auto i = static_cast<size_t>(rng.below(static_cast<int64_t>(w.size())));
  out.insert(out.begin() + static_cast<std::ptrdiff_t>(i), random_letter(rng));
  return out;
}
std::string qwerty(const std::string& w, Rng& rng) {
  std::vector<size_t> keys;
  for (size_t i = 0; i < w.size(); ++i) {
    if (qwerty_neighbours().count(static_cast<char>(std::tolower(static_cast<unsigned char>(w[i]))))) {
      keys.push_back(i);
    }
  }
  if (keys.empty()) return w;
  const size_t i = keys[static_cast<size_t>(rng.below(static_cast<int64_t>(keys.size())))];
  const auto original = static_cast<unsigned char>(w[i]);
  const std::string& near = qwerty_neighbours().at(static_cast<char>(std::tolower(original)));
  char replacement = near[static_cast<size_t>(rng.below(static_cast<int64_t>(near.size())))];
  if (std::isupper(original)) replacement = static_cast<char>(std::toupper(replacement));
  std::string out = w;
  out[i] = replacement;
  return out;
}
std::string mixed(const std::string& w, Rng& rng) {
  static const WordEdit kEdits[] = {swap_neighbours, substitute, delete_char, insert_char};
  return kEdits[rng.below(4)](w, rng);
}

WordEdit edit_for(const std::string& kind) {
  if (kind == "aaa") return [](const std::string&, Rng&) { return std::string("AAA"); };
  if (kind == "swap") return swap_neighbours;
  if (kind == "substitute") return substitute;
  if (kind == "delete") return delete_char;
  if (kind == "insert") return insert_char;
  if (kind == "qwerty") return qwerty;
  return mixed;
}

// Corrupts n = max(floor(rate * words), 1) distinct candidate words of one line.
std::string corrupt_line(const std::string& line, const TextCorruption& corruption,
                         const WordEdit& edit, Rng& rng) {
  const auto spans = find_words(line);
  if (spans.empty()) return line;
  const bool char_level = corruption.kind != "aaa";
  std::vector<size_t> candidates;
  for (size_t i = 0; i < spans.size(); ++i) {
    const std::string word = line.substr(spans[i].begin, spans[i].end - spans[i].begin);
    if (is_stopword(word) || (char_level && word.size() <= 1)) continue;
    candidates.push_back(i);
  }
  const auto wanted = std::max<size_t>(
      static_cast<size_t>(std::floor(corruption.rate * static_cast<double>(spans.size()))), 1);
  // The positions, uniformly without replacement.
  std::vector<size_t> chosen;
  for (int64_t pick : sample_without_replacement(static_cast<int64_t>(candidates.size()),
                                                 static_cast<int64_t>(wanted), rng)) {
    chosen.push_back(candidates[static_cast<size_t>(pick)]);
  }
  std::sort(chosen.begin(), chosen.end());
  std::string out;
  size_t cursor = 0;
  for (size_t index : chosen) {
    const WordSpan& span = spans[index];
    out += line.substr(cursor, span.begin - cursor);
    out += edit(line.substr(span.begin, span.end - span.begin), rng);
    cursor = span.end;
  }
  out += line.substr(cursor);
  return out;
}

}  // namespace

std::string TextCorruption::label() const { return fmt::format("{}:{:g}", kind, rate); }

bool is_stopword(const std::string& word) { return stopwords().count(word) > 0; }

std::vector<WordSpan> find_words(const std::string& line) {
  std::vector<WordSpan> spans;
  size_t i = 0;
  while (i < line.size()) {
    if (!is_core_char(static_cast<unsigned char>(line[i]))) {
      ++i;
      continue;
    }
    size_t end = i + 1;
    while (end < line.size()) {
      const auto c = static_cast<unsigned char>(line[end]);
      if (is_core_char(c)) {
        ++end;
      } else if (is_inner_char(c) && end + 1 < line.size() &&
                 is_core_char(static_cast<unsigned char>(line[end + 1]))) {
        end += 2;
      } else {
        break;
      }
    }
    spans.push_back({i, end});
    i = end;
  }
  return spans;
}

TextCorruptions TextCorruptions::parse(const std::string& text) {
  TextCorruptions parsed;
  for (const auto& raw : split_text(text, ',')) {
    const auto first = raw.find_first_not_of(' ');
    if (first == std::string::npos) continue;
    const std::string entry = raw.substr(first, raw.find_last_not_of(' ') - first + 1);
    const auto colon = entry.find(':');
    TextCorruption corruption;
    corruption.kind = entry.substr(0, colon);
    const bool known = std::find(std::begin(kKinds), std::end(kKinds), corruption.kind) != std::end(kKinds);
    char* end = nullptr;
    if (colon != std::string::npos) corruption.rate = std::strtod(entry.c_str() + colon + 1, &end);
    if (!known || colon == std::string::npos || *end != '\0' || !(corruption.rate > 0) ||
        corruption.rate > 1) {
      throw ConfigError(fmt::format(
          "entry '{}': expected KIND:RATE with KIND one of aaa, swap, substitute, delete, "
          "insert, qwerty, char and 0 < RATE <= 1",
          entry));
    }
    for (const auto& earlier : parsed.list) {
      if (earlier.label() == corruption.label()) {
        throw ConfigError(fmt::format("entry '{}' is listed twice (split test:{})", entry,
                                      corruption.label()));
      }
    }
    parsed.list.push_back(corruption);
  }
  std::sort(parsed.list.begin(), parsed.list.end(),
            [](const TextCorruption& a, const TextCorruption& b) {
              return std::tie(a.kind, a.rate) < std::tie(b.kind, b.rate);
            });
  return parsed;
}

std::string TextCorruptions::canonical() const {
  std::vector<std::string> items;
  for (const auto& corruption : list) items.push_back(fmt::format("{}:{}", corruption.kind, corruption.rate));
  return fmt::format("{}", fmt::join(items, ","));
}

std::string corrupt_text(const std::string& text, const TextCorruption& corruption,
                         uint64_t seed) {
  const WordEdit edit = edit_for(corruption.kind);
  const uint64_t kind_key = fnv1a(corruption.kind);
  const auto rate_key = static_cast<uint64_t>(std::llround(corruption.rate * 1e9));
  std::string out;
  out.reserve(text.size() + text.size() / 20);
  size_t line_start = 0;
  uint64_t line_index = 0;
  while (line_start < text.size()) {
    size_t line_end = text.find('\n', line_start);
    const bool has_newline = line_end != std::string::npos;
    if (!has_newline) line_end = text.size();
    Rng rng = Rng::keyed({seed, kind_key, rate_key, line_index++});
    out += corrupt_line(text.substr(line_start, line_end - line_start), corruption, edit, rng);
    if (has_newline) out += '\n';
    line_start = line_end + 1;
  }
  return out;
}

}  // namespace moelab
