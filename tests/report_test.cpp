// Reports and plots on a database filled by hand: every report format parsed back cell by
// cell against values computed here (mean, sample std, t-interval, Welch's p), and every plot
// kind's data file against the hand-made metrics, its script, and gnuplot's PNG and SVG.
#include <nlohmann/json.hpp>
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "harness/report/plots.h"
#include "harness/report/report.h"
#include "harness/report/robustness.h"
#include "harness/store/store.h"
#include "scipy_reference.h"
#include "test_util.h"

namespace moelab {
namespace {

using Rows = std::vector<std::vector<std::string>>;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream stream(text);
  for (std::string line; std::getline(stream, line);) lines.push_back(line);
  return lines;
}

std::string trim(const std::string& text) {
  const auto first = text.find_first_not_of(' ');
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(' ') - first + 1);
}

std::vector<std::string> split_on(const std::string& text, const std::string& separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t at; (at = text.find(separator, start)) != std::string::npos; start = at + separator.size()) {
    parts.push_back(trim(text.substr(start, at - start)));
  }
  parts.push_back(trim(text.substr(start)));
  return parts;
}

// A new image run of `router` in `sweep`, its params the router's name.
int64_t create_image_run(Store& store, const std::string& hash, const std::string& sweep,
                         const std::string& router) {
  RunRecord record;
  record.config_hash = hash;
  record.sweep = sweep;
  record.task = "image";
  record.router = router;
  record.params = {{"router.name", router}};
  return store.create_run(record);
}

// Two routers, two seeds each: topk scores 0 and 2, ssr 3 and 5 (test/accuracy).
void fill_report_runs(Store& store) {
  auto add = [&](const std::string& router, double accuracy) {
    const int64_t id = create_image_run(store, router + std::to_string(accuracy), "s", router);
    store.finish_run(id, RunStatus::Done, {{"test/accuracy", accuracy}});
  };
  add("topk", 0.0);
  add("topk", 2.0);
  add("ssr", 3.0);
  add("ssr", 5.0);
}

// The expected table, computed here: n = 2 per group, sample std sqrt(2), the 95 % half-width
// t(0.975, 1) * std / sqrt(2) = 12.7062047 (t quantile from the tables), Welch's
// t = 3 / sqrt(2/2 + 2/2) on 2 degrees of freedom, whose two-sided p is 1 - t / sqrt(t^2 + 2);
// Holm over one comparison leaves it as it is; the minimum detectable effect of that Welch test
// (n 2 and 2, both standard deviations sqrt 2) from SciPy's noncentral t.
struct ExpectedRow {
  std::string label;
  double n, mean, std, ci95;
  double delta, p, p_holm, mde;  // NaN: empty cell
};
std::vector<ExpectedRow> expected_report() {
  const double t = 3.0 / std::sqrt(2.0 / 2.0 + 2.0 / 2.0);
  const double p = 1.0 - t / std::sqrt(t * t + 2.0);
  const double none = std::nan("");
  static const double mde = testing::number(testing::scipy_reference(nlohmann::json::array(
      {{{"op", "mde_two_sample"}, {"n_a", 2}, {"n_b", 2}, {"sd_a", std::sqrt(2.0)},
        {"sd_b", std::sqrt(2.0)}, {"alpha", 0.05}, {"power", 0.8}}}))[0]);
  return {{"topk", 2, 1.0, std::sqrt(2.0), 12.7062047, none, none, none, none},
          {"ssr", 2, 4.0, std::sqrt(2.0), 12.7062047, 3.0, p, p, mde}};
}

void check_rows(const Rows& rows, const std::string& format) {
  const auto expected = expected_report();
  REQUIRE(rows.size() == expected.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    INFO(format << " row " << i);
    const auto& row = rows[i];
    const auto& want = expected[i];
    REQUIRE(row.size() == 9);
    CHECK(row[0] == want.label);
    const double numbers[] = {want.n,     want.mean, want.std,    want.ci95,
                              want.delta, want.p,    want.p_holm, want.mde};
    for (size_t c = 1; c < 9; ++c) {
      INFO("column " << c << " '" << row[c] << "'");
      if (std::isnan(numbers[c - 1])) {
        CHECK(row[c].empty());
      } else {
        REQUIRE_FALSE(row[c].empty());
        CHECK(std::stod(row[c]) == Approx(numbers[c - 1]).epsilon(1e-5));
      }
    }
  }
}

}  // namespace

TEST_CASE("every report format holds the table computed by hand", "[report]") {
  testing::TempDir dir;
  Store store(dir.file("r.db"));
  fill_report_runs(store);
  ReportRequest request;
  request.sweep = "s";
  request.baseline = "topk";
  const auto table = report_table(collect_groups(store, request), request);
  const std::vector<std::string> header = {"router.name", "n",       "mean",   "std", "ci95",
                                           "delta",       "p_welch", "p_holm", "mde"};
  check_rows([&] {
    Rows rows;
    for (const auto& row : table.rows) {
      std::vector<std::string> cells;
      for (const auto& cell : row) cells.push_back(cell.type == Cell::Type::Null ? "" : cell.to_string());
      rows.push_back(cells);
    }
    return rows;
  }(), "table");

  SECTION("csv: a header line, then one line per group") {
    const auto lines = lines_of(render_report(table, request, "csv"));
    REQUIRE(lines.size() == 3);
    CHECK(split_on(lines[0], ",") == header);
    check_rows({split_on(lines[1], ","), split_on(lines[2], ",")}, "csv");
  }
  SECTION("md: a pipe table with a separator row, numbers right-aligned") {
    const auto lines = lines_of(render_report(table, request, "md"));
    REQUIRE(lines.size() == 4);
    auto cells = [](const std::string& line) {
      REQUIRE(line.front() == '|');
      REQUIRE(line.back() == '|');
      return split_on(line.substr(1, line.size() - 2), "|");
    };
    CHECK(cells(lines[0]) == header);
    CHECK(lines[1] == "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    check_rows({cells(lines[2]), cells(lines[3])}, "md");
  }
  SECTION("latex: a tabular with a column spec, hlines, rows ending in \\\\") {
    const auto lines = lines_of(render_report(table, request, "latex"));
    REQUIRE(lines.size() == 9);
    CHECK(lines[0] == "\\begin{tabular}{lrrrrrrrr}");
    CHECK(lines[1] == "\\hline");
    auto cells = [](const std::string& line) {
      REQUIRE(line.size() > 3);
      REQUIRE(line.substr(line.size() - 3) == " \\\\");
      return split_on(line.substr(0, line.size() - 3), "&");
    };
    CHECK(cells(lines[2]) == std::vector<std::string>{"router.name", "n", "mean", "std", "ci95",
                                                      "delta", "p\\_welch", "p\\_holm", "mde"});
    CHECK(lines[3] == "\\hline");
    check_rows({cells(lines[4]), cells(lines[5])}, "latex");
    CHECK(lines[6] == "\\hline");
    CHECK(lines[7] == "\\end{tabular}");
    CHECK(lines[8] == "% test/accuracy");
  }
  SECTION("html: a document with a th header row and a td row per group") {
    const std::string html = render_report(table, request, "html");
    CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
    CHECK_THAT(html, Catch::Matchers::Contains("baseline: topk"));
    const std::regex row_pattern("<tr>(.*?)</tr>"), cell_pattern("<t[hd]>(.*?)</t[hd]>");
    Rows rows;
    for (auto row = std::sregex_iterator(html.begin(), html.end(), row_pattern);
         row != std::sregex_iterator(); ++row) {
      const std::string inner = (*row)[1];
      std::vector<std::string> cells;
      for (auto cell = std::sregex_iterator(inner.begin(), inner.end(), cell_pattern);
           cell != std::sregex_iterator(); ++cell) {
        cells.push_back((*cell)[1]);
      }
      rows.push_back(cells);
    }
    REQUIRE(rows.size() == 3);
    CHECK(rows[0] == header);
    check_rows({rows[1], rows[2]}, "html");
  }
  SECTION("json: an array of objects keyed by column, typed values, null for none") {
    const auto json = nlohmann::json::parse(render_report(table, request, "json"));
    REQUIRE(json.is_array());
    REQUIRE(json.size() == 2);
    Rows rows;
    for (const auto& object : json) {
      REQUIRE(object.size() == header.size());
      std::vector<std::string> cells;
      for (const auto& column : header) {
        const auto& value = object.at(column);
        if (column == "router.name") {
          REQUIRE(value.is_string());
          cells.push_back(value.get<std::string>());
        } else {
          REQUIRE((value.is_number() || value.is_null()));
          cells.push_back(value.is_null() ? "" : fmt::format("{}", value.get<double>()));
        }
      }
      rows.push_back(cells);
    }
    CHECK(json[0].at("n").is_number_integer());
    check_rows(rows, "json");
  }
  SECTION("text: a title line, then the table aligned under its dashed rule") {
    const auto lines = lines_of(render_report(table, request, "text"));
    REQUIRE(lines.size() == 7);
    CHECK(lines[0] == "test/accuracy by router.name (baseline topk):");
    CHECK(lines[5] == "(2 rows)");
    CHECK_THAT(lines[6], Catch::Matchers::Contains("Holm-adjusted") &&
                             Catch::Matchers::Contains("moelab compare"));
    // Columns are the runs of dashes; labels are left-aligned, numbers right-aligned in them.
    std::vector<std::pair<size_t, size_t>> spans;  // [start, end)
    for (size_t at = lines[2].find('-'); at != std::string::npos; at = lines[2].find('-', at)) {
      const size_t end = std::min(lines[2].find(' ', at), lines[2].size());
      spans.emplace_back(at, end);
      at = end;
    }
    REQUIRE(spans.size() == header.size());
    auto cells = [&](const std::string& line, bool numbers_right) {
      std::vector<std::string> out;
      for (size_t c = 0; c < spans.size(); ++c) {
        const std::string text = line.size() > spans[c].first
                                     ? line.substr(spans[c].first, spans[c].second - spans[c].first)
                                     : "";
        const std::string cell = trim(text);
        if (!cell.empty() && numbers_right && c > 0) CHECK(text.back() != ' ');
        if (!cell.empty() && c == 0) CHECK(text.front() != ' ');
        out.push_back(cell == "NULL" ? "" : cell);
      }
      return out;
    };
    CHECK(cells(lines[1], false) == header);
    check_rows({cells(lines[3], true), cells(lines[4], true)}, "text");
  }
}

TEST_CASE("report refuses an unknown baseline, metric or format, naming what exists", "[report]") {
  testing::TempDir dir;
  Store store(dir.file("r.db"));
  fill_report_runs(store);
  ReportRequest request;
  request.sweep = "s";
  request.baseline = "nope";
  CHECK_THROWS_WITH(report_table(collect_groups(store, request), request),
                    Catch::Matchers::Contains("topk; ssr"));
  request.baseline = "topk";
  const auto table = report_table(collect_groups(store, request), request);
  CHECK_THROWS_WITH(render_report(table, request, "xlsx"), Catch::Matchers::Contains("csv, latex"));
  request.metric = "test/bleu";
  CHECK_THROWS_WITH(collect_groups(store, request), Catch::Matchers::Contains("test/bleu"));
}

namespace {

// The rows of numbers of a gnuplot .dat file under each comment line that has rows after it
// (the file's heading comment has none), labelled by that comment.
struct DataBlock {
  std::string label;
  std::vector<std::vector<double>> rows;
};
std::vector<DataBlock> read_blocks(const std::string& path) {
  std::vector<DataBlock> blocks;
  for (const auto& line : lines_of(testing::read_text(path))) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      if (!blocks.empty() && blocks.back().rows.empty()) blocks.pop_back();
      blocks.push_back({trim(line.substr(1)), {}});
      continue;
    }
    REQUIRE_FALSE(blocks.empty());
    std::vector<double> row;
    std::stringstream stream(line);
    for (double value; stream >> value;) row.push_back(value);
    blocks.back().rows.push_back(row);
  }
  return blocks;
}

// Two routers x two seeds in sweep "p": train/loss at steps 10 and 20, per-expert loads of
// two layers at step 20 (and stale ones at step 10), clean accuracy and CIFAR-10-C accuracies
// of two corruptions at severities 1 and 2 (c, c - 0.1; c - 0.2, c - 0.3).
void fill_plot_runs(Store& store) {
  struct Run {
    std::string router;
    double loss10, loss20, accuracy, corrupted;
  };
  const Run runs[] = {{"topk", 2.0, 1.0, 0.8, 0.5}, {"topk", 4.0, 2.0, 0.9, 0.7},
                      {"ssr", 3.0, 1.5, 0.85, 0.6}, {"ssr", 3.0, 0.5, 0.75, 0.6}};
  int index = 0;
  for (const auto& run : runs) {
    const int64_t id = create_image_run(store, "h" + std::to_string(index++), "p", run.router);
    std::vector<MetricRow> rows = {{10, "train", "loss", run.loss10}, {20, "train", "loss", run.loss20}};
    for (int layer : {0, 1}) {
      for (int expert : {0, 1, 2}) {
        const double share = (expert + 1 + layer) / (6.0 + 3 * layer);
        rows.push_back({20, "train", fmt::format("moe/l{}/load_e{}", layer, expert), share});
        rows.push_back({10, "train", fmt::format("moe/l{}/load_e{}", layer, expert), 0.99});
      }
    }
    store.log_metrics(id, rows);
    store.finish_run(id, RunStatus::Done,
                     {{"test/accuracy", run.accuracy},
                      {"cifar_c:gaussian_noise:1/accuracy", run.corrupted},
                      {"cifar_c:shot_noise:1/accuracy", run.corrupted - 0.1},
                      {"cifar_c:gaussian_noise:2/accuracy", run.corrupted - 0.2},
                      {"cifar_c:shot_noise:2/accuracy", run.corrupted - 0.3},
                      {"test@hash/accuracy", 0.0}});
  }
}

bool starts_with_bytes(const std::string& path, const std::string& magic) {
  return testing::read_text(path).compare(0, magic.size(), magic) == 0;
}

}  // namespace

TEST_CASE("plots: each kind's data are the hand-made metrics, and gnuplot renders them",
          "[report][plot]") {
  testing::TempDir dir;
  Store store(dir.file("p.db"));
  fill_plot_runs(store);
  PlotRequest request;
  request.sweep = "p";
  request.output_dir = dir.file("plots");

  SECTION("curves: mean, min, max and n over seeds per step, one block per group") {
    request.kind = "curves";
    request.metric = "train/loss";
    const auto files = make_plot(store, request);
    const std::string base = dir.file("plots/curves_train_loss");
    CHECK(files == std::vector<std::string>{base + ".dat", base + ".gp", base + ".png", base + ".svg"});
    const auto blocks = read_blocks(base + ".dat");
    REQUIRE(blocks.size() == 2);
    CHECK(blocks[0].label == "topk");
    CHECK(blocks[0].rows == std::vector<std::vector<double>>{{10, 3.0, 2.0, 4.0, 2}, {20, 1.5, 1.0, 2.0, 2}});
    CHECK(blocks[1].label == "ssr");
    CHECK(blocks[1].rows == std::vector<std::vector<double>>{{10, 3.0, 3.0, 3.0, 2}, {20, 1.0, 0.5, 1.5, 2}});
    const std::string script = testing::read_text(base + ".gp");
    CHECK_THAT(script, Catch::Matchers::Contains("\"curves_train_loss.dat\" index 0"));
    CHECK_THAT(script, Catch::Matchers::Contains("'' index 1 using 1:2"));
    CHECK_THAT(script, Catch::Matchers::Contains("title \"ssr\""));
    CHECK(starts_with_bytes(base + ".png", "\x89PNG\r\n\x1a\n"));
    const std::string svg = testing::read_text(base + ".svg");
    CHECK_THAT(svg, Catch::Matchers::Contains("<svg"));
    CHECK_THAT(svg, Catch::Matchers::Contains(">ssr<"));   // the legend names both groups
    CHECK_THAT(svg, Catch::Matchers::Contains(">topk<"));
  }
  SECTION("corruption: error by severity (0 = clean), mean and 95% CI over seeds per group") {
    request.kind = "corruption";
    request.render = false;  // the default suite: the one the runs have, cifar_c
    const auto files = make_plot(store, request);
    CHECK(files == std::vector<std::string>{dir.file("plots/corruption_cifar_c.dat"),
                                            dir.file("plots/corruption_cifar_c.gp")});
    const auto blocks = read_blocks(files[0]);
    REQUIRE(blocks.size() == 2);
    // Per run: clean error 1 - accuracy; severity 1 error 1 - (c - 0.05), severity 2
    // 1 - (c - 0.25). The 95% half-width of two values a, b is t(0.975, 1) |a - b| / 2.
    const double t = 12.7062047;
    struct Expected {
      double severity, first, second;  // the two seeds' errors
    };
    const Expected topk[] = {{0, 0.2, 0.1}, {1, 0.55, 0.35}, {2, 0.75, 0.55}};  // c = 0.5, 0.7
    const Expected ssr[] = {{0, 0.15, 0.25}, {1, 0.45, 0.45}, {2, 0.65, 0.65}};  // c = 0.6
    for (int g = 0; g < 2; ++g) {
      CHECK(blocks[g].label == (g == 0 ? "topk" : "ssr"));
      REQUIRE(blocks[g].rows.size() == 3);
      for (int i = 0; i < 3; ++i) {
        const Expected& want = (g == 0 ? topk : ssr)[i];
        const double mean = (want.first + want.second) / 2, half = t * std::abs(want.first - want.second) / 2;
        const auto& row = blocks[g].rows[i];
        INFO(blocks[g].label << " severity " << want.severity);
        CHECK(row[0] == want.severity);
        CHECK(row[1] == Approx(mean));
        CHECK(row[2] == Approx(mean - half).margin(1e-9));
        CHECK(row[3] == Approx(mean + half).margin(1e-9));
        CHECK(row[4] == 2);
      }
    }
    CHECK_THAT(testing::read_text(files[1]), Catch::Matchers::Contains("95% CI over seeds"));
    // fmnist_c has a single severity: the plot needs severities and says so.
    request.suite = "fmnist_c";
    CHECK_THROWS_WITH(make_plot(store, request), Catch::Matchers::Contains("one severity"));
  }
  SECTION("shares: the last logged step's expert shares, the groups side by side") {
    request.kind = "shares";
    const auto files = make_plot(store, request);
    const std::string base = dir.file("plots/shares");
    CHECK(files == std::vector<std::string>{base + ".dat", base + ".gp", base + ".png", base + ".svg"});
    const auto blocks = read_blocks(base + ".dat");
    REQUIRE(blocks.size() == 2);
    CHECK(blocks[0].label == "topk");
    CHECK(blocks[1].label == "ssr");
    for (const auto& block : blocks) {
      REQUIRE(block.rows.size() == 6);  // 2 layers x 3 experts, the same shares in every run
      for (const auto& row : block.rows) {
        INFO(row[0] << " " << row[1]);
        CHECK(row[2] == Approx((row[1] + 1 + row[0]) / (6.0 + 3 * row[0])));  // step 20, not 10
      }
    }
    const std::string script = testing::read_text(base + ".gp");
    CHECK_THAT(script, Catch::Matchers::Contains("set multiplot layout 1,2"));
    CHECK_THAT(script, Catch::Matchers::Contains("set cbrange [0:0.5]"));  // one scale: max 3/6
    CHECK_THAT(script, Catch::Matchers::Contains("sweep p: expert load"));
    CHECK(starts_with_bytes(base + ".png", "\x89PNG\r\n\x1a\n"));
  }
  SECTION("load: per-layer balance over training, mean over seeds, one colour scale") {
    request.kind = "load";
    request.render = false;
    request.metric = "load_cv";
    // load_cv per layer: run i logs (i + 1) * (layer + 1) at step 10 and twice that at 20.
    int64_t run = 1;
    for (const double factor : {1.0, 2.0, 3.0, 4.0}) {
      std::vector<MetricRow> rows;
      for (int layer : {0, 1}) {
        rows.push_back({10, "train", fmt::format("moe/l{}/load_cv", layer), factor * (layer + 1)});
        rows.push_back({20, "train", fmt::format("moe/l{}/load_cv", layer), 2 * factor * (layer + 1)});
      }
      store.log_metrics(run++, rows);
    }
    const auto files = make_plot(store, request);
    CHECK(files[0] == dir.file("plots/load_load_cv.dat"));
    const auto blocks = read_blocks(files[0]);
    REQUIRE(blocks.size() == 2);
    // topk = runs 1, 2 (factors 1, 2: mean 1.5); ssr = runs 3, 4 (mean 3.5).
    const double means[] = {1.5, 3.5};
    for (int g = 0; g < 2; ++g) {
      REQUIRE(blocks[g].rows.size() == 4);
      for (const auto& row : blocks[g].rows) {
        INFO(blocks[g].label << " step " << row[0] << " layer " << row[1]);
        CHECK(row[2] == Approx(means[g] * (row[1] + 1) * (row[0] / 10)));
      }
    }
    // One colour scale over both panels: 1.5 (topk, layer 0, step 10) to 14 (ssr, layer 1, 20).
    CHECK_THAT(testing::read_text(files[1]), Catch::Matchers::Contains("set cbrange [1.5:14]"));
    request.metric = "no_such_metric";
    CHECK_THROWS_WITH(make_plot(store, request), Catch::Matchers::Contains("no_such_metric"));
  }
}

}  // namespace moelab

namespace moelab {
namespace {

// Two routers x two seeds with hand-chosen errors on two CIFAR-10-C corruptions at two
// severities, and one PGD attack's accuracy.
struct RobustnessRun {
  std::string router;
  double clean_error;
  double gaussian[2], shot[2];  // errors at severities 1, 2
  double pgd_accuracy;
};
const RobustnessRun kRobustnessRuns[] = {{"topk", 0.1, {0.3, 0.5}, {0.2, 0.4}, 0.3},
                                         {"topk", 0.2, {0.4, 0.6}, {0.3, 0.5}, 0.5},
                                         {"ssr", 0.1, {0.2, 0.4}, {0.2, 0.2}, 0.4},
                                         {"ssr", 0.1, {0.3, 0.3}, {0.1, 0.3}, 0.6}};
const char* const kPgd = "pgd:eps255=8:steps=10:step255=2:restarts=1";

void fill_robustness_runs(Store& store) {
  int index = 0;
  for (const auto& run : kRobustnessRuns) {
    const int64_t id = create_image_run(store, "r" + std::to_string(index++), "rob", run.router);
    std::vector<std::pair<std::string, double>> summaries = {
        {"test/accuracy", 1 - run.clean_error}, {fmt::format("test:{}/accuracy", kPgd), run.pgd_accuracy}};
    for (int s = 0; s < 2; ++s) {
      summaries.push_back({fmt::format("cifar_c:gaussian_noise:{}/accuracy", s + 1), 1 - run.gaussian[s]});
      summaries.push_back({fmt::format("cifar_c:shot_noise:{}/accuracy", s + 1), 1 - run.shot[s]});
    }
    store.finish_run(id, RunStatus::Done, summaries);
  }
}

// (group, measure) -> (n, mean, delta or NaN) from a robustness table.
std::map<std::pair<std::string, std::string>, std::vector<double>> cells_of(const QueryResult& table) {
  std::map<std::pair<std::string, std::string>, std::vector<double>> cells;
  for (const auto& row : table.rows) {
    auto number = [](const Cell& cell) {
      return cell.type == Cell::Type::Null ? std::nan("") : cell.type == Cell::Type::Integer
                                                                ? static_cast<double>(cell.integer)
                                                                : cell.real;
    };
    cells[{row[0].text, row[1].text}] = {number(row[2]), number(row[3]), number(row[6]), number(row[7])};
  }
  return cells;
}

// PNG decoding for the colour check: 8-bit RGB or RGBA, non-interlaced (what pngcairo
// writes); returns the set of opaque colours as 0xRRGGBB.
std::set<uint32_t> png_colours(const std::string& path) {
  const std::string file = testing::read_text(path);
  REQUIRE(file.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  auto be32 = [&](size_t at) {
    return (uint32_t(uint8_t(file[at])) << 24) | (uint32_t(uint8_t(file[at + 1])) << 16) |
           (uint32_t(uint8_t(file[at + 2])) << 8) | uint8_t(file[at + 3]);
  };
  uint32_t width = 0, height = 0;
  int colour_type = -1;
  std::string compressed;
  for (size_t at = 8; at + 8 <= file.size();) {
    const uint32_t length = be32(at);
    const std::string type = file.substr(at + 4, 4);
    if (type == "IHDR") {
      width = be32(at + 8);
      height = be32(at + 12);
      REQUIRE(uint8_t(file[at + 16]) == 8);   // bit depth
      colour_type = uint8_t(file[at + 17]);
      REQUIRE(uint8_t(file[at + 20]) == 0);   // not interlaced
    } else if (type == "IDAT") {
      compressed += file.substr(at + 8, length);
    }
    at += 12 + length;
  }
  REQUIRE((colour_type == 2 || colour_type == 6));
  const size_t channels = colour_type == 6 ? 4 : 3, stride = width * channels;
  std::vector<uint8_t> raw((stride + 1) * height);
  uLongf raw_size = raw.size();
  REQUIRE(uncompress(raw.data(), &raw_size, reinterpret_cast<const Bytef*>(compressed.data()),
                     compressed.size()) == Z_OK);
  std::vector<uint8_t> previous(stride, 0), line(stride);
  std::set<uint32_t> colours;
  for (uint32_t y = 0; y < height; ++y) {
    const uint8_t filter = raw[y * (stride + 1)];
    const uint8_t* in = &raw[y * (stride + 1) + 1];
    for (size_t x = 0; x < stride; ++x) {
      const int left = x >= channels ? line[x - channels] : 0, up = previous[x];
      const int corner = x >= channels ? previous[x - channels] : 0;
      int predictor = 0;
      if (filter == 1) predictor = left;
      if (filter == 2) predictor = up;
      if (filter == 3) predictor = (left + up) / 2;
      if (filter == 4) {
        const int p = left + up - corner, pa = std::abs(p - left), pb = std::abs(p - up), pc = std::abs(p - corner);
        predictor = pa <= pb && pa <= pc ? left : pb <= pc ? up : corner;
      }
      line[x] = static_cast<uint8_t>(in[x] + predictor);
    }
    for (size_t x = 0; x < width; ++x) {
      const uint8_t* p = &line[x * channels];
      if (channels == 4 && p[3] != 255) continue;
      colours.insert((uint32_t(p[0]) << 16) | (uint32_t(p[1]) << 8) | p[2]);
    }
    previous = line;
  }
  return colours;
}

}  // namespace

TEST_CASE("robustness: per group over seeds against a baseline group, on hand-computed values",
          "[report][robustness]") {
  testing::TempDir dir;
  Store store(dir.file("r.db"));
  fill_robustness_runs(store);
  RobustnessRequest request;
  request.sweep = "rob";
  auto cells = cells_of(robustness_report(store, request));
  CHECK(request.suite == "cifar_c");  // found from the runs
  CHECK(request.baseline == "topk");  // the first group

  // The baseline's errors averaged over its two seeds: clean 0.15, gaussian (0.35, 0.55),
  // shot (0.25, 0.45). CE_c = sum_s E_c,s / sum_s base_c,s; relative CE_c =
  // (sum_s E_c,s - 2 clean) / (sum_s base_c,s - 2 * 0.15).
  const double base_gaussian = 0.35 + 0.55, base_shot = 0.25 + 0.45;
  const double mce_topk[] = {(0.8 / base_gaussian + 0.6 / base_shot) / 2,
                             (1.0 / base_gaussian + 0.8 / base_shot) / 2};
  const double mce_ssr = (0.6 / base_gaussian + 0.4 / base_shot) / 2;  // both seeds
  const double relative_ssr = ((0.6 - 0.2) / (base_gaussian - 0.3) + (0.4 - 0.2) / (base_shot - 0.3)) / 2;
  const double topk_mce = (mce_topk[0] + mce_topk[1]) / 2;
  auto check = [&](const std::string& group, const std::string& measure, double mean, double delta) {
    INFO(group << " " << measure);
    const auto found = cells.find({group, measure});
    REQUIRE(found != cells.end());
    CHECK(found->second[0] == 2);
    CHECK(found->second[1] == Approx(mean));
    if (std::isnan(delta)) CHECK(std::isnan(found->second[2]));
    else CHECK(found->second[2] == Approx(delta));
  };
  const double none = std::nan("");
  check("topk", "clean_error", 0.15, none);
  check("topk", "mean_corruption_error", (0.35 + 0.45) / 2, none);
  check("topk", "mCE", topk_mce, none);
  check("topk", "relative_mCE", 1.0, none);  // both seeds' relative CEs are exactly 1
  check("topk", std::string("robust_accuracy[") + kPgd + "]", 0.4, none);
  check("ssr", "clean_error", 0.1, 0.1 - 0.15);
  check("ssr", "mean_corruption_error", 0.25, 0.25 - 0.4);
  check("ssr", "mCE", mce_ssr, mce_ssr - topk_mce);
  check("ssr", "relative_mCE", relative_ssr, relative_ssr - 1.0);
  check("ssr", std::string("robust_accuracy[") + kPgd + "]", 0.5, 0.1);
  CHECK(std::isnan(cells[{"topk", "mCE"}][3]));    // no p for the baseline itself
  CHECK_FALSE(std::isnan(cells[{"ssr", "robust_accuracy[" + std::string(kPgd) + "]"}][3]));

  request.by = "corruption";
  cells = cells_of(robustness_report(store, request));
  check("topk", "error[gaussian_noise]", (0.4 + 0.5) / 2, none);
  check("ssr", "error[shot_noise]", (0.2 + 0.2) / 2, 0.2 - 0.35);
  check("ssr", "CE[gaussian_noise]", 0.6 / base_gaussian, 0.6 / base_gaussian - 1.0);
  CHECK(cells.count({"ssr", "mCE"}) == 0);

  request.by = "severity";
  cells = cells_of(robustness_report(store, request));
  check("topk", "error[s=1]", ((0.3 + 0.2) / 2 + (0.4 + 0.3) / 2) / 2, none);
  check("ssr", "error[s=2]", ((0.4 + 0.2) / 2 + (0.3 + 0.3) / 2) / 2, 0.3 - 0.5);

  request.by = "";
  request.baseline = "ssr";
  cells = cells_of(robustness_report(store, request));
  check("ssr", "mCE", 1.0, none);
  request.baseline = "moe";
  CHECK_THROWS_WITH(robustness_report(store, request),
                    Catch::Matchers::Contains("'moe' is not a group") && Catch::Matchers::Contains("topk; ssr"));

  // Through the command line: CSV parses back to the same table.
  const auto csv = testing::run_moelab("robustness " + dir.file("r.db") + " --format csv");
  REQUIRE(csv.exit_code == 0);
  CHECK_THAT(csv.output, Catch::Matchers::Contains("router,measure,n,mean,std,ci95,delta,p_welch"));
  CHECK_THAT(csv.output, Catch::Matchers::Contains(fmt::format("ssr,mCE,2,{}", mce_ssr).substr(0, 16)));
}

TEST_CASE("a rendered two-group plot shows both groups' colours", "[report][plot]") {
  testing::TempDir dir;
  Store store(dir.file("p.db"));
  fill_robustness_runs(store);
  PlotRequest request;
  request.sweep = "rob";
  request.kind = "corruption";
  request.output_dir = dir.file("plots");
  make_plot(store, request);
  const auto colours = png_colours(dir.file("plots/corruption_cifar_c.png"));
  // gnuplot's default line colours 1 and 2 (the groups' lc 1, lc 2): dark violet and green.
  CHECK(colours.count(0x9400d3) == 1);
  CHECK(colours.count(0x009e73) == 1);
  // A colour no line uses is absent, so the check can fail.
  CHECK(colours.count(0x56b4e9) == 0);
}

}  // namespace moelab
