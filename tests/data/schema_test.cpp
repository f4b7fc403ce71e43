// Schemas: hashing stability, transforms, vocabularies, presets, serving
// encoders and the ToJson/FromJson round trip.
#include <gtest/gtest.h>

#include <cmath>

#include "data/hashing.h"
#include "data/schema.h"
#include "data_test_util.h"

namespace fieldfm {
namespace {

using data::FieldHashSeed;
using data::HashedIndex;
using testing::MakePipeline;
using testing::ReadAll;
using testing::TempDir;

// Golden numbers: if any of these change, every saved model silently breaks.
TEST(Hashing, GoldenValues) {
  // XXH64 of the empty string with seed 0 is the published xxHash test vector.
  EXPECT_EQ(FieldHashSeed(0, ""), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(FieldHashSeed(0, "C1"), 1953052475120754509ull);
  EXPECT_EQ(FieldHashSeed(0, "site_id"), 349731865495696001ull);
  EXPECT_EQ(HashedIndex("68fd1e64", FieldHashSeed(0, "C1"), 22), 2078679u);
  EXPECT_EQ(HashedIndex("", FieldHashSeed(0, "C1"), 22), 3951150u);
  EXPECT_EQ(HashedIndex("1fbe01fe", FieldHashSeed(0, "site_id"), 22), 2017888u);
  EXPECT_EQ(HashedIndex("Comedy", FieldHashSeed(0, "genres"), 22), 3861476u);
  EXPECT_EQ(HashedIndex("United States", FieldHashSeed(0, "country"), 22), 2736535u);
  EXPECT_EQ(HashedIndex("68fd1e64", FieldHashSeed(7, "C1"), 20), 675694u);
  EXPECT_EQ(HashedIndex("Comedy", FieldHashSeed(7, "genres"), 20), 654847u);
}

TEST(Hashing, PipelineUsesTheDocumentedFormula) {
  TempDir dir;
  PipelineOptions o;
  o.schema_path = dir.File("s.json", R"({"header": false, "columns": [{"name": "y", "type": "label"},
      {"name": "C1", "type": "categorical"}, {"name": "x", "type": "categorical", "field": "C1"}]})");
  o.hash_bits = 20;
  o.hash_seed = 7;
  auto rows = ReadAll(MakePipeline(o), dir.File("d.csv", "1,68fd1e64,68fd1e64\n"));
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  // Two columns sharing field C1 hash alike; the index is the golden one.
  EXPECT_EQ(rows->features, (std::vector<Feature>{{0, 675694, 1.0f}, {0, 675694, 1.0f}}));
}

TEST(Transforms, Log2BucketBoundaries) {
  // v > 2 ? floor(ln(v)^2) : v (floor for non-integers).
  EXPECT_EQ(data::Log2Bucket(-5), -5);
  EXPECT_EQ(data::Log2Bucket(0), 0);
  EXPECT_EQ(data::Log2Bucket(0.5), 0);
  EXPECT_EQ(data::Log2Bucket(2), 2);
  EXPECT_EQ(data::Log2Bucket(3), 1);     // ln 3 = 1.0986, squared 1.207
  EXPECT_EQ(data::Log2Bucket(10), 5);    // 5.30
  EXPECT_EQ(data::Log2Bucket(100), 21);  // 21.2
  EXPECT_EQ(data::Log2Bucket(1e6), 190); // 190.87
}

TEST(Transforms, Weekday) {
  EXPECT_EQ(data::Weekday(2014, 10, 21), 1);  // Avazu's first day, a Tuesday
  EXPECT_EQ(data::Weekday(2000, 1, 1), 5);    // Saturday
  EXPECT_EQ(data::Weekday(1970, 1, 1), 3);    // Thursday
}

// One numeric column, values 1..100; no hashed columns, so the dense range starts at 0.
FeaturePipeline NumericPipeline(const TempDir& dir, const std::string& transform, std::string* train) {
  std::string content;
  for (int v = 1; v <= 100; ++v) content += "0," + std::to_string(v) + "\n";
  *train = dir.File("train.csv", content);
  PipelineOptions o;
  o.schema_path = dir.File("s.json", R"({"header": false, "columns": [{"name": "y", "type": "label"},
      {"name": "n", "type": "numeric", "transform": ")" + transform + R"(", "bins": 4}]})");
  auto p = MakePipeline(o);
  Status st = p.Fit(*train, {});
  EXPECT_TRUE(st.ok()) << st.message();
  return p;
}

TEST(Transforms, QuantileBinsFittedOnTrainingData) {
  TempDir dir;
  std::string train;
  auto p = NumericPipeline(dir, "quantile", &train);
  EXPECT_EQ(p.index_space(), 4u);
  auto rows = ReadAll(p, dir.File("t.csv", "0,1\n0,25\n0,26\n0,51\n0,75.5\n0,76\n0,1000\n0,-3\n0,\n"));
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  // Edges are the 25/50/75 % sample points: 26, 51, 76; an edge value opens its bin.
  std::vector<uint32_t> bins;
  for (const auto& f : rows->features) bins.push_back(f.index);
  EXPECT_EQ(bins, (std::vector<uint32_t>{0, 0, 1, 2, 2, 3, 3, 0}));
  EXPECT_EQ(rows->offsets.back(), 8u);  // the empty cell is missing: no feature
  auto j = nlohmann::json::parse(p.ToJson());
  EXPECT_EQ(j["schema"]["columns"][1]["edges"], (std::vector<double>{26, 51, 76}));
}

TEST(Transforms, HybridAddsNormalizedRawValueInTheSameField) {
  TempDir dir;
  std::string train;
  auto p = NumericPipeline(dir, "hybrid", &train);
  EXPECT_EQ(p.index_space(), 5u);
  auto rows = ReadAll(p, dir.File("t.csv", "0,50.5\n0,200\n"));
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(std::vector<Feature>(rows->row(0).begin(), rows->row(0).end()),
            (std::vector<Feature>{{0, 1, 1.0f}, {0, 4, 0.5f}}));
  EXPECT_EQ(rows->row(1)[1], (Feature{0, 4, 1.0f}));  // clipped to the fitted range
}

TEST(Transforms, NoneAndLogKeepTheValue) {
  TempDir dir;
  PipelineOptions o;
  o.schema_path = dir.File("s.toml", R"(header = false
[[columns]]
name = "y"
type = "label"
[[columns]]
name = "a"
type = "numeric"
[[columns]]
name = "b"
type = "numeric"
transform = "log"
)");
  auto p = MakePipeline(o);
  auto rows = ReadAll(p, dir.File("d.csv", "1,-2.5,-3\n"));
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  EXPECT_EQ(rows->features, (std::vector<Feature>{{0, 0, -2.5f}, {1, 1, static_cast<float>(-std::log1p(3.0))}}));
}

TEST(Categorical, VocabularyWithMinCountAndUnknownBucket) {
  TempDir dir;
  PipelineOptions o;
  o.schema_path = dir.File("s.json", R"({"header": true, "columns": [{"name": "y", "type": "label"},
      {"name": "c", "type": "categorical", "encoding": "vocab", "min_count": 2}]})");
  auto p = MakePipeline(o);
  auto train = dir.File("train.csv", "y,c\n1,a\n0,b\n1,a\n0,c\n0,b\n1,a\n");
  // Unfitted vocabularies cannot be used.
  EXPECT_EQ(p.Open(train, {}).status().code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(p.Fit(train, {}).ok());
  EXPECT_EQ(p.index_space(), 3u);  // unknown bucket + a + b
  auto rows = ReadAll(p, dir.File("t.csv", "y,c\n0,a\n0,b\n0,c\n0,zzz\n"));
  ASSERT_TRUE(rows.ok());
  std::vector<uint32_t> ids;
  for (const auto& f : rows->features) ids.push_back(f.index);
  EXPECT_EQ(ids, (std::vector<uint32_t>{1, 2, 0, 0}));  // a (3x), b (2x); c seen once -> unknown
}

TEST(Categorical, MultiValuedCellsAndQuotedCommas) {
  TempDir dir;
  PipelineOptions o;
  o.schema_path = dir.File("s.json", R"({"columns": [{"name": "title", "type": "categorical", "encoding": "vocab"},
      {"name": "genres", "type": "categorical", "delimiter": "|"}, {"name": "rating", "type": "label"}]})");
  auto p = MakePipeline(o);
  auto path = dir.File("m.csv",
                       "title,genres,rating\n\"Bridges of Madison County, The (1995)\",Drama|Romance,4\n"
                       "\"Say \"\"Hi\"\"\",Comedy||Drama|,3\n");
  ASSERT_TRUE(p.Fit(path, {}).ok());
  auto rows = ReadAll(p, path);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  EXPECT_EQ(rows->labels, (std::vector<float>{4, 3}));
  ASSERT_EQ(rows->row(0).size(), 3u);
  ASSERT_EQ(rows->row(1).size(), 3u);  // empty items are skipped
  const uint64_t seed = FieldHashSeed(0, "genres");
  EXPECT_EQ(rows->row(0)[1], (Feature{1, HashedIndex("Drama", seed, 22), 1.0f}));
  EXPECT_EQ(rows->row(1)[2], rows->row(0)[1]);  // Drama again
  auto j = nlohmann::json::parse(p.ToJson());
  EXPECT_EQ(j["schema"]["columns"][0]["vocab"],
            (std::vector<std::string>{"Bridges of Madison County, The (1995)", "Say \"Hi\""}));
}

TEST(Schema, ErrorsNameTheProblem) {
  TempDir dir;
  PipelineOptions o;
  o.schema_path = dir.File("s.json", R"({"columns": [{"name": "a", "type": "categorial"}]})");
  auto p = FeaturePipeline::Create(o);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(p.status().message(), o.schema_path + ": schema: column 'a': unknown type 'categorial'");
  o.schema_path = dir.File("s2.json", R"({"columns": [{"name": "a", "typo": "label"}]})");
  EXPECT_EQ(FeaturePipeline::Create(o).status().message(), o.schema_path + ": schema: column 'a': unknown key 'typo'");
  o.schema_path = dir.File("s3.toml", "columns = [\n");
  EXPECT_EQ(FeaturePipeline::Create(o).status().code(), StatusCode::kInvalidArgument);
  o.schema_path = dir.File("s4.json", R"({"columns": [{"name": "y", "type": "label"}]})");
  EXPECT_EQ(FeaturePipeline::Create(o).status().message(),
            "schema: no feature columns (categorical, numeric, hour_yymmddhh)");
}

TEST(Schema, HeaderMustMatchTheSchema) {
  TempDir dir;
  PipelineOptions o;
  o.schema_path = dir.File("s.json", R"({"columns": [{"name": "y", "type": "label"}, {"name": "c", "type": "categorical"}]})");
  auto p = MakePipeline(o);
  auto path = dir.File("d.csv", "y,c,extra\n1,a,b\n");
  auto src = p.Open(path, {});
  ASSERT_FALSE(src.ok());
  EXPECT_EQ(src.status().code(), StatusCode::kDataError);
  EXPECT_EQ(src.status().message(),
            path + ":1: header: column 'extra' is not in the schema (add it, e.g. with type \"ignore\", or set "
                   "ignore_unknown_columns = true)");
  path = dir.File("d2.csv", "y\n1\n");
  EXPECT_EQ(p.Open(path, {}).status().message(), path + ":1: header: schema column 'c' is missing (token 'y')");
}

TEST(Presets, CriteoRawTsv) {
  TempDir dir;
  PipelineOptions o;
  o.preset = "criteo";
  o.hash_bits = 20;
  auto p = MakePipeline(o);
  EXPECT_EQ(p.num_fields(), 39u);
  EXPECT_EQ(p.index_space(), 1u << 20);
  EXPECT_EQ(p.format(), InputFormat::kTsv);
  std::string line = "1\t-1\t\t5";
  for (int i = 4; i <= 13; ++i) line += "\t";
  for (int i = 1; i <= 26; ++i) line += i == 2 ? "\t" : "\tab12";
  auto rows = ReadAll(p, dir.File("c.tsv", line + "\n"));
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_EQ(rows->rows(), 1u);
  // I1=-1 and I3=5 (empty I2, I4..I13 missing), 25 categoricals (C2 empty).
  ASSERT_EQ(rows->row(0).size(), 27u);
  EXPECT_EQ(rows->row(0)[0], (Feature{0, HashedIndex("-1", FieldHashSeed(0, "I1"), 20), 1.0f}));
  EXPECT_EQ(rows->row(0)[1], (Feature{2, HashedIndex("2", FieldHashSeed(0, "I3"), 20), 1.0f}));  // floor(ln5^2)=2
  EXPECT_EQ(rows->row(0)[2].field, 13u);
}

TEST(Presets, AvazuHourBecomesHourOfDayAndWeekday) {
  TempDir dir;
  PipelineOptions o;
  o.preset = "avazu";
  auto p = MakePipeline(o);
  auto names = p.field_names();
  ASSERT_EQ(names.size(), 23u);
  EXPECT_EQ(names[0], "hour_of_day");
  EXPECT_EQ(names[1], "weekday");
  std::string header = "id,click,hour,C1,banner_pos,site_id,site_domain,site_category,app_id,app_domain,"
                       "app_category,device_id,device_ip,device_model,device_type,device_conn_type,C14,C15,C16,"
                       "C17,C18,C19,C20,C21\n";
  std::string row = "123,1,14102517,1005,0,a,b,c,d,e,f,g,h,i,1,2,15706,320,50,1722,0,35,-1,79\n";
  auto rows = ReadAll(p, dir.File("a.csv", header + row));
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  const uint32_t base = 1u << 22;
  EXPECT_EQ(rows->row(0)[0], (Feature{0, base + 17, 1.0f}));
  EXPECT_EQ(rows->row(0)[1], (Feature{1, base + 24 + 5, 1.0f}));  // 2014-10-25 was a Saturday
  EXPECT_EQ(rows->row(0).size(), 23u);
  auto bad = ReadAll(p, dir.File("b.csv", header + "1,0,14133199,1,0,a,b,c,d,e,f,g,h,i,1,2,1,2,3,4,5,6,7,8\n"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(":2: invalid YYMMDDHH hour in column 'hour' (token '14133199')"),
            std::string::npos);
}

TEST(Serving, EncodeJsonForSchemas) {
  TempDir dir;
  PipelineOptions o;
  o.schema_path = dir.File("s.json", R"({"columns": [{"name": "y", "type": "label"},
      {"name": "user", "type": "categorical"}, {"name": "genres", "type": "categorical", "delimiter": "|"},
      {"name": "n", "type": "numeric"}]})");
  auto p = MakePipeline(o);
  std::vector<Feature> from_json, from_file;
  size_t ignored = 0;
  auto st = p.EncodeJson(nlohmann::json::parse(R"({"user": 42, "genres": ["A", "B"], "n": 2.5, "zip": "x",
      "other": null, "y": 1})"), &from_json, &ignored);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(ignored, 2u);
  auto rows = ReadAll(p, dir.File("d.csv", "y,user,genres,n\n0,42,A|B,2.5\n"));
  ASSERT_TRUE(rows.ok());
  from_file.assign(rows->features.begin(), rows->features.end());
  EXPECT_EQ(from_json, from_file);
  EXPECT_TRUE(p.EncodeTokens("0,42,A|B,2.5", &from_file).ok());
  EXPECT_EQ(from_json, from_file);

  st = p.EncodeJson(nlohmann::json::parse(R"({"user": {"id": 1}})"), &from_json, &ignored);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "column 'user': expected a string, number or null, got object");
  st = p.EncodeJson(nlohmann::json::parse(R"({"n": "abc"})"), &from_json, &ignored);
  EXPECT_EQ(st.message(), "invalid number in column 'n' (token 'abc')");
  st = p.EncodeJson(nlohmann::json::parse(R"([1, 2])"), &from_json, &ignored);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
}

TEST(Serving, EncodeTokensForLibffmAndLibsvm) {
  PipelineOptions o;
  o.format = InputFormat::kLibffm;
  auto p = MakePipeline(o);
  std::vector<Feature> out;
  ASSERT_TRUE(p.EncodeTokens("3:17:1 5:9:0.5", &out).ok());
  EXPECT_EQ(out, (std::vector<Feature>{{3, 17, 1.0f}, {5, 9, 0.5f}}));
  ASSERT_TRUE(p.EncodeTokens("1 3:17:1", &out).ok());  // a leading label is skipped
  EXPECT_EQ(out, (std::vector<Feature>{{3, 17, 1.0f}}));
  size_t ignored = 0;
  ASSERT_TRUE(p.EncodeJson("3:17:1", &out, &ignored).ok());
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(p.EncodeTokens("3:x:1", &out).message(), "invalid feature index (token '3:x:1')");
  EXPECT_EQ(p.EncodeJson(nlohmann::json::object(), &out, &ignored).code(), StatusCode::kInvalidArgument);
  o.format = InputFormat::kLibsvm;
  ASSERT_TRUE(MakePipeline(o).EncodeTokens("4:2", &out).ok());
  EXPECT_EQ(out, (std::vector<Feature>{{4, 4, 2.0f}}));
}

TEST(State, ToJsonRoundTripsExactly) {
  TempDir dir;
  PipelineOptions o;
  o.schema_path = dir.File("s.json", R"({"columns": [{"name": "y", "type": "label"}, {"name": "w", "type": "weight"},
      {"name": "c", "type": "categorical", "encoding": "vocab", "min_count": 1},
      {"name": "q", "type": "numeric", "transform": "hybrid", "bins": 3},
      {"name": "h", "type": "categorical", "delimiter": ";", "field": "c"},
      {"name": "l", "type": "numeric", "transform": "log2_bucket"}]})");
  o.hash_bits = 12;
  o.hash_seed = 99;
  auto p = MakePipeline(o);
  auto train = dir.File("t.csv", "y,w,c,q,h,l\n1,2,x,0.1,a;b,7\n0,1,y,0.30000000000000004,b,\n1,,x,1e-7,,-2\n");
  ASSERT_TRUE(p.Fit(train, {}).ok());
  const std::string json = p.ToJson();
  auto q = FeaturePipeline::FromJson(json);
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_EQ(q->ToJson(), json);
  EXPECT_EQ(q->Fingerprint(), p.Fingerprint());
  EXPECT_EQ(q->field_names(), p.field_names());
  EXPECT_EQ(q->index_space(), p.index_space());
  auto a = ReadAll(p, train), b = ReadAll(*q, train);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->features, b->features);
  EXPECT_EQ(a->weights, (std::vector<float>{2, 1, 1}));
  // Any change of state changes the fingerprint.
  o.hash_seed = 100;
  auto r = MakePipeline(o);
  ASSERT_TRUE(r.Fit(train, {}).ok());
  EXPECT_NE(r.Fingerprint(), p.Fingerprint());
  // Field maps round-trip too; garbage is rejected, not crashed on.
  PipelineOptions svm;
  svm.field_map_path = dir.File("m.txt", "a 0 3\nb 4 9\n");
  auto s = MakePipeline(svm);
  auto s2 = FeaturePipeline::FromJson(s.ToJson());
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(s2->ToJson(), s.ToJson());
  EXPECT_EQ(s2->num_fields(), 2u);
  EXPECT_EQ(FeaturePipeline::FromJson("{").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(FeaturePipeline::FromJson(R"({"fieldfm_pipeline": 1, "format": "csv"})").status().code(),
            StatusCode::kCorruption);
}

}  // namespace
}  // namespace fieldfm
