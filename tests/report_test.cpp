// Reports and plots on a database filled by hand: every report format parsed back cell by
// cell against values computed here (mean, sample std, t-interval, Welch's p), and every plot
// kind's data file against the hand-made metrics, its script, and gnuplot's PNG and SVG.
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <regex>
#include <sstream>

#include "harness/report/plots.h"
#include "harness/report/report.h"
#include "harness/store/store.h"
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

// Two routers, two seeds each: topk scores 0 and 2, ssr 3 and 5 (test/accuracy).
void fill_report_runs(Store& store) {
  auto add = [&](const std::string& router, double accuracy) {
    RunRecord record;
    record.config_hash = router + std::to_string(accuracy);
    record.sweep = "s";
    record.task = "image";
    record.router = router;
    record.params = {{"router.name", router}};
    const int64_t id = store.create_run(record);
    store.finish_run(id, "done", {{"test/accuracy", accuracy}});
  };
  add("topk", 0.0);
  add("topk", 2.0);
  add("ssr", 3.0);
  add("ssr", 5.0);
}

// The expected table, computed here: n = 2 per group, sample std sqrt(2), the 95 % half-width
// t(0.975, 1) * std / sqrt(2) = 12.7062047 (t quantile from the tables), Welch's
// t = 3 / sqrt(2/2 + 2/2) on 2 degrees of freedom, whose two-sided p is 1 - t / sqrt(t^2 + 2).
struct ExpectedRow {
  std::string label;
  double n, mean, std, ci95;
  double delta, p;  // NaN: empty cell
};
std::vector<ExpectedRow> expected_report() {
  const double t = 3.0 / std::sqrt(2.0 / 2.0 + 2.0 / 2.0);
  const double p = 1.0 - t / std::sqrt(t * t + 2.0);
  const double none = std::nan("");
  return {{"topk", 2, 1.0, std::sqrt(2.0), 12.7062047, none, none},
          {"ssr", 2, 4.0, std::sqrt(2.0), 12.7062047, 3.0, p}};
}

void check_rows(const Rows& rows, const std::string& format) {
  const auto expected = expected_report();
  REQUIRE(rows.size() == expected.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    INFO(format << " row " << i);
    const auto& row = rows[i];
    const auto& want = expected[i];
    REQUIRE(row.size() == 7);
    CHECK(row[0] == want.label);
    const double numbers[] = {want.n, want.mean, want.std, want.ci95, want.delta, want.p};
    for (size_t c = 1; c < 7; ++c) {
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
  const std::vector<std::string> header = {"router.name", "n", "mean", "std", "ci95", "delta",
                                           "p_welch"};
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
    CHECK(lines[1] == "|---|---:|---:|---:|---:|---:|---:|");
    check_rows({cells(lines[2]), cells(lines[3])}, "md");
  }
  SECTION("latex: a tabular with a column spec, hlines, rows ending in \\\\") {
    const auto lines = lines_of(render_report(table, request, "latex"));
    REQUIRE(lines.size() == 9);
    CHECK(lines[0] == "\\begin{tabular}{lrrrrrr}");
    CHECK(lines[1] == "\\hline");
    auto cells = [](const std::string& line) {
      REQUIRE(line.size() > 3);
      REQUIRE(line.substr(line.size() - 3) == " \\\\");
      return split_on(line.substr(0, line.size() - 3), "&");
    };
    CHECK(cells(lines[2]) == std::vector<std::string>{"router.name", "n", "mean", "std", "ci95",
                                                      "delta", "p\\_welch"});
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
    REQUIRE(lines.size() == 6);
    CHECK(lines[0] == "test/accuracy by router.name (baseline topk):");
    CHECK(lines[5] == "(2 rows)");
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
    RunRecord record;
    record.config_hash = "h" + std::to_string(index++);
    record.sweep = "p";
    record.task = "image";
    record.router = run.router;
    record.params = {{"router.name", run.router}};
    const int64_t id = store.create_run(record);
    std::vector<MetricRow> rows = {{10, "train", "loss", run.loss10}, {20, "train", "loss", run.loss20}};
    for (int layer : {0, 1}) {
      for (int expert : {0, 1, 2}) {
        const double share = (expert + 1 + layer) / (6.0 + 3 * layer);
        rows.push_back({20, "train", fmt::format("moe/l{}/load_e{}", layer, expert), share});
        rows.push_back({10, "train", fmt::format("moe/l{}/load_e{}", layer, expert), 0.99});
      }
    }
    store.log_metrics(id, rows);
    store.finish_run(id, "done",
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
  SECTION("corruption: the clean metric at severity 0, then each severity's mean") {
    request.kind = "corruption";
    request.render = false;  // the default suite: the first declared with severities, cifar_c
    const auto files = make_plot(store, request);
    CHECK(files == std::vector<std::string>{dir.file("plots/corruption.dat"),
                                            dir.file("plots/corruption.gp")});
    const auto blocks = read_blocks(files[0]);
    REQUIRE(blocks.size() == 2);
    CHECK(blocks[0].label == "topk");  // clean (0.8, 0.9); c = 0.5, 0.7
    REQUIRE(blocks[0].rows.size() == 3);
    const double topk[][2] = {{0, 0.85}, {1, 0.55}, {2, 0.35}};
    const double ssr[][2] = {{0, 0.80}, {1, 0.55}, {2, 0.35}};  // clean (0.85, 0.75); c = 0.6
    for (int i = 0; i < 3; ++i) {
      CHECK(blocks[0].rows[i][0] == topk[i][0]);
      CHECK(blocks[0].rows[i][1] == Approx(topk[i][1]));
      CHECK(blocks[1].rows[i][0] == ssr[i][0]);
      CHECK(blocks[1].rows[i][1] == Approx(ssr[i][1]));
    }
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
