#include "fieldfm/synth.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/synth_zipf.h"

namespace fieldfm {
namespace {

namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("fieldfm_synth_test_" + std::to_string(::getpid()) + "_" + name);
  fs::create_directories(p);
  return p;
}

std::string ReadBytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

SynthOptions SmallOptions() {
  SynthOptions o;
  o.fields = 8;
  o.numeric = 3;
  o.max_cardinality = 5000;
  o.rows = 3000;
  o.test_rows = 700;
  o.seed = 11;
  return o;
}

struct ParsedRow {
  float label = 0, weight = 1;
  std::vector<uint32_t> ids;
};

// Reads back a libffm file written by synth, mapping indices to per-field ids.
std::vector<ParsedRow> ParseLibffm(const fs::path& path, const SynthModel& model) {
  std::vector<ParsedRow> rows;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string tok;
    ss >> tok;
    ParsedRow r;
    size_t colon = tok.find(':');
    r.label = std::stof(tok.substr(0, colon));
    if (colon != std::string::npos) r.weight = std::stof(tok.substr(colon + 1));
    r.ids.assign(model.num_fields(), UINT32_MAX);
    while (ss >> tok) {
      unsigned f = 0;
      unsigned long long idx = 0;
      int val = 0;
      EXPECT_EQ(std::sscanf(tok.c_str(), "%u:%llu:%d", &f, &idx, &val), 3) << tok;
      EXPECT_LT(f, model.num_fields());
      EXPECT_EQ(val, 1);
      EXPECT_GE(idx, model.field_offset(f)) << "index outside its field's range";
      EXPECT_LT(idx, model.field_offset(f) + model.cardinality(f)) << "index outside its field's range";
      r.ids[f] = static_cast<uint32_t>(idx - model.field_offset(f));
    }
    for (uint32_t id : r.ids) EXPECT_NE(id, UINT32_MAX) << "a field is missing: " << line;
    rows.push_back(std::move(r));
  }
  return rows;
}

nlohmann::json ReadJson(const fs::path& p) { return nlohmann::json::parse(ReadBytes(p)); }

TEST(Synth, SameSeedSameBytesAnyThreadCount) {
  SynthOptions o = SmallOptions();
  fs::path a = TempDir("det_a"), b = TempDir("det_b"), c = TempDir("det_c");
  ASSERT_TRUE(GenerateSynth(o, (a / "s").string()).ok());
  o.threads = 3;
  auto res = GenerateSynth(o, (b / "s").string());
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_EQ(res->files.size(), 3u);
  for (const char* name : {"s.train.ffm", "s.test.ffm", "s.json"}) {
    EXPECT_FALSE(ReadBytes(a / name).empty());
    EXPECT_EQ(ReadBytes(a / name), ReadBytes(b / name)) << name;
  }
  o.seed = 12;
  ASSERT_TRUE(GenerateSynth(o, (c / "s").string()).ok());
  EXPECT_NE(ReadBytes(a / "s.train.ffm"), ReadBytes(c / "s.train.ffm"));
  EXPECT_NE(ReadBytes(a / "s.test.ffm"), ReadBytes(c / "s.test.ffm"));
  // Train and test are different draws.
  EXPECT_NE(ReadBytes(a / "s.train.ffm").substr(0, 2000), ReadBytes(a / "s.test.ffm").substr(0, 2000));
  fs::remove_all(a);
  fs::remove_all(b);
  fs::remove_all(c);
}

// Independent O(n^2) AUC: share of (positive, negative) pairs ranked right, ties half.
double PairwiseAuc(const std::vector<double>& p, const std::vector<float>& y) {
  double good = 0, pairs = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (y[i] < 0.5f) continue;
    for (size_t j = 0; j < p.size(); ++j) {
      if (y[j] > 0.5f) continue;
      pairs += 1;
      good += p[i] > p[j] ? 1.0 : (p[i] == p[j] ? 0.5 : 0.0);
    }
  }
  return good / pairs;
}

TEST(Synth, SidecarBayesFiguresMatchTheWrittenRows) {
  SynthOptions o = SmallOptions();
  fs::path dir = TempDir("bayes");
  auto res = GenerateSynth(o, (dir / "s").string());
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  auto model = SynthModel::Create(o);
  ASSERT_TRUE(model.ok());
  nlohmann::json side = ReadJson(dir / "s.json");
  EXPECT_EQ(side["options"]["seed"], 11);
  ASSERT_EQ(side["fields"].size(), 8u);
  for (const char* split : {"train", "test"}) {
    SCOPED_TRACE(split);
    std::vector<ParsedRow> rows = ParseLibffm(dir / side[split]["file"].get<std::string>(), *model);
    ASSERT_EQ(rows.size(), side[split]["rows"].get<size_t>());
    std::vector<double> p;
    std::vector<float> y;
    double ll = 0, pos = 0;
    for (const ParsedRow& r : rows) {
      ASSERT_TRUE(r.label == 0.0f || r.label == 1.0f);
      p.push_back(model->TrueProbability(r.ids));
      y.push_back(r.label);
      ll -= r.label > 0 ? std::log(p.back()) : std::log(1 - p.back());
      pos += r.label;
    }
    const double n = rows.size(), base = pos / n;
    EXPECT_NEAR(side[split]["base_rate"].get<double>(), base, 1e-12);
    EXPECT_NEAR(side[split]["bayes_logloss"].get<double>(), ll / n, 1e-9);
    EXPECT_NEAR(side[split]["bayes_auc"].get<double>(), PairwiseAuc(p, y), 1e-9);
    EXPECT_NEAR(side[split]["base_rate_logloss"].get<double>(), -(base * std::log(base) + (1 - base) * std::log(1 - base)), 1e-12);
    // The true model must beat the constant predictor on its own data.
    EXPECT_LT(side[split]["bayes_logloss"].get<double>(), side[split]["base_rate_logloss"].get<double>());
  }
  EXPECT_NEAR(res->train.bayes_logloss, side["train"]["bayes_logloss"].get<double>(), 1e-12);
  fs::remove_all(dir);
}

TEST(Synth, DefaultsGiveTheIntendedDifficulty) {
  SynthOptions o;  // 39 fields, 13 numeric, cardinalities up to 1M
  o.rows = 20000;
  fs::path dir = TempDir("defaults");
  auto res = GenerateSynth(o, (dir / "d").string());
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_GT(res->train.base_rate, 0.18);
  EXPECT_LT(res->train.base_rate, 0.27);
  EXPECT_GT(res->train.bayes_logloss, 0.40);
  EXPECT_LT(res->train.bayes_logloss, 0.50);
  EXPECT_GT(res->train.bayes_auc, 0.70);
  EXPECT_EQ(res->test.rows, 0u);
  EXPECT_FALSE(fs::exists(dir / "d.test.ffm"));
  fs::remove_all(dir);
}

TEST(Synth, CardinalitiesAndNumericBinsAreRespected) {
  SynthOptions o = SmallOptions();
  o.fields = 12;
  o.numeric = 4;
  o.min_cardinality = 20;
  o.max_cardinality = 300;
  o.zipf = 0.6;  // flat enough to reach the top ids
  o.format = SynthFormat::kCsv;
  o.raw_numeric = true;
  o.test_rows = 0;
  auto model = SynthModel::Create(o);
  ASSERT_TRUE(model.ok());
  uint64_t space = 0;
  for (uint32_t f = 0; f < o.fields; ++f) {
    EXPECT_EQ(model->field_offset(f), space);
    space += model->cardinality(f);
    if (f >= o.numeric) {
      EXPECT_GE(model->cardinality(f), 20u);
      EXPECT_LE(model->cardinality(f), 300u);
    }
  }
  EXPECT_EQ(model->index_space(), space);

  fs::path dir = TempDir("card");
  ASSERT_TRUE(GenerateSynth(o, (dir / "c").string()).ok());
  std::ifstream in(dir / "c.train.csv");
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_EQ(line.substr(0, 21), "label,I1,I1_raw,I2,I2");
  std::vector<uint32_t> max_id(o.fields, 0);
  size_t rows = 0;
  while (std::getline(in, line)) {
    ++rows;
    std::vector<uint64_t> cols;
    std::istringstream ss(line);
    std::string tok;
    while (std::getline(ss, tok, ',')) cols.push_back(std::stoull(tok));
    ASSERT_EQ(cols.size(), 1 + 2 * o.numeric + (o.fields - o.numeric));
    size_t c = 1;
    for (uint32_t f = 0; f < o.fields; ++f) {
      const uint64_t id = cols[c++];
      ASSERT_LT(id, model->cardinality(f)) << "field " << f;
      max_id[f] = std::max<uint32_t>(max_id[f], id);
      if (f < o.numeric) {
        const uint64_t raw = cols[c++];
        const uint64_t expect = std::min<uint64_t>(model->cardinality(f) - 1, static_cast<uint64_t>(2 * std::log2(raw + 1.0)));
        EXPECT_EQ(id, expect) << "bin of raw count " << raw;
      }
    }
  }
  EXPECT_EQ(rows, o.rows);
  // With 3000 rows and a flat Zipf, every categorical field reaches its upper half.
  for (uint32_t f = o.numeric; f < o.fields; ++f) EXPECT_GE(max_id[f], model->cardinality(f) / 2) << "field " << f;
  fs::remove_all(dir);
}

TEST(Synth, RegressionRatesAndWeights) {
  SynthOptions o = SmallOptions();
  o.task = SynthTask::kRegression;
  o.max_impressions = 50;
  fs::path dir = TempDir("regression");
  auto res = GenerateSynth(o, (dir / "r").string());
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  auto model = SynthModel::Create(o);
  ASSERT_TRUE(model.ok());
  std::vector<ParsedRow> rows = ParseLibffm(dir / "r.train.ffm", *model);
  ASSERT_EQ(rows.size(), o.rows);
  double w_sum = 0, w_err = 0, w_rate = 0;
  bool some_fraction = false;
  for (const ParsedRow& r : rows) {
    ASSERT_GE(r.weight, 1.0f);
    ASSERT_LE(r.weight, 50.0f);
    ASSERT_EQ(r.weight, std::floor(r.weight));
    ASSERT_GE(r.label, 0.0f);
    ASSERT_LE(r.label, 1.0f);
    const double successes = r.label * r.weight;
    EXPECT_NEAR(successes, std::round(successes), 1e-3);  // rate = successes / impressions
    some_fraction |= r.label > 0 && r.label < 1;
    const double p = model->TrueProbability(r.ids);
    w_sum += r.weight;
    w_rate += r.weight * r.label;
    w_err += r.weight * (p - r.label) * (p - r.label);
  }
  EXPECT_TRUE(some_fraction);
  nlohmann::json side = ReadJson(dir / "r.json");
  EXPECT_EQ(side["options"]["task"], "regression");
  EXPECT_NEAR(side["train"]["weight_sum"].get<double>(), w_sum, 1e-6);
  EXPECT_NEAR(side["train"]["base_rate"].get<double>(), w_rate / w_sum, 1e-6);
  EXPECT_NEAR(side["train"]["bayes_rmse"].get<double>(), std::sqrt(w_err / w_sum), 1e-6);
  EXPECT_LT(res->train.bayes_rmse, res->train.base_rate_rmse);
  fs::remove_all(dir);
}

TEST(Synth, BadOptionsAreUsageErrors) {
  SynthOptions o = SmallOptions();
  o.numeric = 9;  // more than fields
  EXPECT_EQ(GenerateSynth(o, "/nonexistent/x").status().code(), StatusCode::kInvalidArgument);
  o = SmallOptions();
  o.zipf = 0;
  EXPECT_EQ(SynthModel::Create(o).status().code(), StatusCode::kInvalidArgument);
  o = SmallOptions();
  o.raw_numeric = true;  // libffm has no raw column
  EXPECT_EQ(SynthModel::Create(o).status().code(), StatusCode::kInvalidArgument);
  o = SmallOptions();
  EXPECT_EQ(GenerateSynth(o, "/nonexistent/dir/x").status().code(), StatusCode::kIOError);
}

TEST(SynthZipf, MatchesThePowerLaw) {
  ZipfTable table(1.1);
  for (uint64_t n : {uint64_t{50}, uint64_t{200000}}) {
    SCOPED_TRACE(n);
    ZipfSampler z(&table, n);
    double norm = 0;
    for (uint64_t k = 1; k <= n; ++k) norm += std::pow(double(k), -1.1);
    std::vector<uint64_t> count(4, 0);
    uint64_t tail = 0;
    const int draws = 200000;
    for (int i = 0; i < draws; ++i) {
      const uint64_t k = z.Sample((i + 0.5) / draws);  // stratified uniforms
      ASSERT_GE(k, 1u);
      ASSERT_LE(k, n);
      if (k <= 3) ++count[k];
      if (k > 2000) ++tail;
    }
    for (uint64_t k = 1; k <= 3; ++k) EXPECT_NEAR(double(count[k]) / draws, std::pow(double(k), -1.1) / norm, 2e-3);
    double tail_mass = 0;
    for (uint64_t k = 2001; k <= n; ++k) tail_mass += std::pow(double(k), -1.1) / norm;
    EXPECT_NEAR(double(tail) / draws, tail_mass, 2e-3);
  }
}

TEST(SynthCli, WritesFilesAndPrintsFigures) {
  fs::path dir = TempDir("cli");
  std::string cmd = std::string(FIELDFM_BINARY) + " synth -o " + (dir / "x").string() +
                    " --rows 2000 --test-rows 300 --fields 6 --numeric 2 --max-cardinality 1000 --format csv > " +
                    (dir / "out.txt").string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << ReadBytes(dir / "out.txt");
  EXPECT_TRUE(fs::exists(dir / "x.train.csv"));
  EXPECT_TRUE(fs::exists(dir / "x.test.csv"));
  nlohmann::json side = ReadJson(dir / "x.json");
  const std::string out = ReadBytes(dir / "out.txt");
  char expect[64];
  std::snprintf(expect, sizeof(expect), "Bayes logloss %.4f", side["test"]["bayes_logloss"].get<double>());
  EXPECT_NE(out.find(expect), std::string::npos) << out;
  std::string bad = std::string(FIELDFM_BINARY) + " synth -o " + (dir / "y").string() + " --format parquet > /dev/null 2>&1";
  EXPECT_EQ(WEXITSTATUS(std::system(bad.c_str())), 2);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace fieldfm
