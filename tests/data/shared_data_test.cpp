// Every real data set in shared/data parses with the row counts and label
// balance its README states (schemas for them live in tests/data/schemas).
#include <gtest/gtest.h>

#include <cstdio>

#include "data_test_util.h"

namespace fieldfm {
namespace {

using testing::Fixture;
using testing::MakePipeline;
using testing::ReadAll;
using testing::Shared;

struct Expect {
  uint64_t rows;
  uint64_t ones;  // rows with label 1 (after -1 -> 0)
};

void CheckFile(const FeaturePipeline& p, const std::string& path, Expect e, ReadOptions read = {}) {
  ReadStats stats;
  auto rows = ReadAll(p, path, read, &stats, 4096);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  EXPECT_EQ(rows->rows(), e.rows) << path;
  EXPECT_EQ(stats.rows, e.rows);
  EXPECT_EQ(stats.bad_lines, 0u);
  EXPECT_EQ(std::count(rows->labels.begin(), rows->labels.end(), 1.0f), static_cast<long>(e.ones)) << path;
  if (p.num_fields() > 0) {
    EXPECT_LE(stats.max_field, p.num_fields());
    for (const Feature& f : rows->features) {
      ASSERT_LT(f.field, p.num_fields());
      ASSERT_LT(f.index, p.index_space());
    }
  }
}

FeaturePipeline WithSchema(const std::string& schema, const std::string& fit_path = "") {
  PipelineOptions o;
  o.schema_path = Fixture(schema);
  auto p = MakePipeline(o);
  if (!fit_path.empty()) {
    Status st = p.Fit(fit_path, {});
    EXPECT_TRUE(st.ok()) << st.message();
  }
  return p;
}

TEST(SharedData, FrappeLibfmWithFieldMap) {
  PipelineOptions o;
  o.field_map_path = Fixture("frappe_fields.txt");
  auto p = MakePipeline(o);
  ASSERT_EQ(p.num_fields(), 10u);
  ReadOptions two;
  two.threads = 2;
  CheckFile(p, Shared("frappe_nfm/frappe.validation.libfm"), {57722, 19063}, two);
  CheckFile(p, Shared("frappe_nfm/frappe.test.libfm"), {28860, 9536});
  // Exactly one feature per field in every row.
  auto rows = ReadAll(p, Shared("frappe_nfm/frappe.test.libfm"));
  ASSERT_TRUE(rows.ok());
  for (size_t r = 0; r < rows->rows(); r += 997) {
    auto row = rows->row(r);
    ASSERT_EQ(row.size(), 10u);
    for (uint32_t f = 0; f < 10; ++f) EXPECT_EQ(row[f].field, f);
  }
}

TEST(SharedData, FrappeRawTsv) {
  auto p = WithSchema("frappe_raw.toml");
  auto rows = ReadAll(p, Shared("frappe_raw/frappe.csv"), {}, nullptr, 8192);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  EXPECT_EQ(rows->rows(), 96203u);
  double sum = 0;
  for (float y : rows->labels) sum += y;
  EXPECT_EQ(sum, 7824276.0);  // README: cnt sums to 7,824,276
}

TEST(SharedData, CriteoKaggle8kWithPreset) {
  PipelineOptions o;
  o.preset = "criteo";
  auto p = MakePipeline(o);
  CheckFile(p, Shared("criteo_kaggle_8k/train.tsv"), {7200, 1549});
  CheckFile(p, Shared("criteo_kaggle_8k/dev.tsv"), {409, 93});
  CheckFile(p, Shared("criteo_kaggle_8k/test.tsv"), {391, 86});
}

TEST(SharedData, CriteoKaggleTinyCsv) {
  auto p = WithSchema("criteo_kaggle_csv.toml");
  CheckFile(p, Shared("criteo_kaggle_tiny_csv/train.tiny.csv"), {1999, 418});
  CheckFile(p, Shared("criteo_kaggle_tiny_csv/test.tiny.csv"), {1999, 0});
}

TEST(SharedData, FilesWithoutTheLabelColumnReadWithLabelZero) {
  // ChenglongChen's test file has no Label column; emulate it from the train file.
  testing::TempDir dir;
  std::ifstream in(Shared("criteo_kaggle_tiny_csv/train.tiny.csv"), std::ios::binary);
  std::string line, content;
  while (std::getline(in, line)) {
    size_t a = line.find(','), b = line.find(',', a + 1);
    content += line.substr(0, a) + line.substr(b) + "\n";
  }
  auto p = WithSchema("criteo_kaggle_csv.toml");
  auto with = ReadAll(p, Shared("criteo_kaggle_tiny_csv/train.tiny.csv"));
  auto without = ReadAll(p, dir.File("nolabel.csv", content));
  ASSERT_TRUE(with.ok() && without.ok()) << without.status().message();
  EXPECT_EQ(without->features, with->features);
  EXPECT_EQ(std::count(without->labels.begin(), without->labels.end(), 0.0f), 1999);
}

TEST(SharedData, CriteoDeepctrSampleWithFittedSchema) {
  const std::string path = Shared("criteo_deepctr_sample/criteo_sample.txt");
  auto p = WithSchema("criteo_deepctr.json", path);
  CheckFile(p, path, {200, 49});
}

TEST(SharedData, CriteoXlearnLibffm) {
  PipelineOptions o;
  o.format = InputFormat::kLibffm;
  auto p = MakePipeline(o);
  CheckFile(p, Shared("criteo_xlearn_ffm/small_train.txt"), {200, 48});
  CheckFile(p, Shared("criteo_xlearn_ffm/small_test.txt"), {200, 46});
  ReadStats stats;
  ASSERT_TRUE(ReadAll(p, Shared("criteo_xlearn_ffm/small_train.txt"), {}, &stats).ok());
  EXPECT_EQ(stats.max_field, 18u);
  EXPECT_LE(stats.max_index, 10000u);
}

TEST(SharedData, AvazuWithPreset) {
  PipelineOptions o;
  o.preset = "avazu";
  CheckFile(MakePipeline(o), Shared("avazu_deepctr_sample/avazu_sample.txt"), {100, 20});
}

TEST(SharedData, MovieLens100kUdata) {
  auto p = WithSchema("ml100k_udata.toml");
  auto rows = ReadAll(p, Shared("ml-100k/u.data"), {}, nullptr, 8192);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_EQ(rows->rows(), 100000u);
  std::vector<int> hist(6, 0);
  for (float y : rows->labels) ++hist[static_cast<int>(y)];
  EXPECT_EQ(hist, (std::vector<int>{0, 6110, 11370, 27145, 34174, 21201}));
  EXPECT_EQ(rows->features.size(), 200000u);  // user + item per rating
}

TEST(SharedData, MovieLens1mSampleMultiValuedGenres) {
  const std::string path = Shared("movielens1m_deepctr_sample/movielens_sample.txt");
  auto p = WithSchema("movielens1m.toml", path);
  auto rows = ReadAll(p, path);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_EQ(rows->rows(), 200u);
  std::vector<int> hist(6, 0);
  for (float y : rows->labels) ++hist[static_cast<int>(y)];
  EXPECT_EQ(hist, (std::vector<int>{0, 10, 23, 54, 65, 48}));
  // Row 1 is "Ed Wood (1994)", genres Comedy|Drama: two features in the genres field.
  const auto names = p.field_names();
  const uint32_t genres = static_cast<uint32_t>(std::find(names.begin(), names.end(), "genres") - names.begin());
  auto row = rows->row(0);
  EXPECT_EQ(std::count_if(row.begin(), row.end(), [&](const Feature& f) { return f.field == genres; }), 2);
}

TEST(SharedData, TaobaoTinyWithClickSequence) {
  const std::string train = Shared("taobao_fuxictr_tiny/train_sample.csv");
  auto p = WithSchema("taobao.toml", train);
  CheckFile(p, train, {100, 4});
  CheckFile(p, Shared("taobao_fuxictr_tiny/valid_sample.csv"), {100, 4});
}

}  // namespace
}  // namespace fieldfm
