// Text corruptions for language-model robustness, applied line by line to an evaluation
// split before tokenisation, seeded per (run seed, corruption, rate, line):
//   aaa        the "attacked WikiText" word swap (TextAttack Augmenter with a WordSwap whose
//              only candidate is "AAA" and NLTK stopwords protected): per non-empty line,
//              n = max(floor(rate * words), 1) distinct non-stopword words become "AAA";
//   swap, substitute, delete, insert, qwerty
//              TextAttack's character operators (neighbouring swap, random ASCII letter
//              substitution, deletion, insertion, QWERTY neighbour key), each on n words
//              chosen the same way among non-stopwords longer than one character;
//   char       CharSwapAugmenter: each chosen word gets one of swap/substitute/delete/insert.
// Words are runs of letters, digits and _ with internal ' - * @, as TextAttack splits them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moelab {

struct TextCorruption {
  std::string kind;
  double rate = 0.0;
  std::string label() const;  // the split suffix, "aaa:0.015" (rate to 6 significant digits)
};

// task.corruptions of the lm task: "aaa:0.015,qwerty:0.1". Kept sorted by (kind, rate), rates
// written as the shortest decimal that reads back to them, whatever order and spelling they
// were given in (each corruption is evaluated on its own).
struct TextCorruptions {
  std::vector<TextCorruption> list;

  static constexpr const char* kTypeName = "text corruption list";
  // ConfigError naming the bad entry; one listed twice (the same split label) too.
  static TextCorruptions parse(const std::string& text);
  std::string canonical() const;  // "" when there are none
};

std::string corrupt_text(const std::string& text, const TextCorruption& corruption,
                         uint64_t seed);

// Exposed for tests.
bool is_stopword(const std::string& word);
struct WordSpan {
  size_t begin, end;
};
std::vector<WordSpan> find_words(const std::string& line);

}  // namespace moelab
