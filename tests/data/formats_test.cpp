// libffm / libsvm / CSV reading: values, line endings, compression, threads
// and the exact messages for malformed lines.
#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include <random>

#include "data_test_util.h"

namespace fieldfm {
namespace {

using testing::MakePipeline;
using testing::ReadAll;
using testing::TempDir;

PipelineOptions Libffm() {
  PipelineOptions o;
  o.format = InputFormat::kLibffm;
  return o;
}

PipelineOptions Libsvm() {
  PipelineOptions o;
  o.format = InputFormat::kLibsvm;
  return o;
}

TEST(Libffm, ParsesLabelsWeightsAndRepeatedFields) {
  TempDir dir;
  auto path = dir.File("a.ffm", "1 0:3:1 1:5:0.5\n-1:2.5 2:7:1 2:8:1\n+1 1:1:-0.25");
  ReadStats stats;
  auto rows = ReadAll(MakePipeline(Libffm()), path, {}, &stats);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_EQ(rows->rows(), 3u);
  EXPECT_EQ(rows->labels, (std::vector<float>{1, 0, 1}));
  EXPECT_EQ(rows->weights, (std::vector<float>{1, 2.5f, 1}));
  EXPECT_EQ(std::vector<Feature>(rows->row(0).begin(), rows->row(0).end()),
            (std::vector<Feature>{{0, 3, 1.0f}, {1, 5, 0.5f}}));
  EXPECT_EQ(std::vector<Feature>(rows->row(1).begin(), rows->row(1).end()),
            (std::vector<Feature>{{2, 7, 1.0f}, {2, 8, 1.0f}}));
  EXPECT_EQ(rows->row(2)[0], (Feature{1, 1, -0.25f}));
  EXPECT_EQ(stats.rows, 3u);
  EXPECT_EQ(stats.max_field, 3u);
  EXPECT_EQ(stats.max_index, 9u);
  EXPECT_EQ(stats.bytes, 47u);
}

TEST(Libffm, KeepsMinusOneWhenAsked) {
  TempDir dir;
  auto o = Libffm();
  o.map_minus_one = false;
  auto rows = ReadAll(MakePipeline(o), dir.File("a.ffm", "-1 0:1:1\n2.5 0:1:1\n"));
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->labels, (std::vector<float>{-1, 2.5f}));
}

TEST(Libffm, CrlfAndMissingFinalNewlineAndBlankLines) {
  TempDir dir;
  auto lf = ReadAll(MakePipeline(Libffm()), dir.File("lf.ffm", "1 0:1:1\n0 1:2:0.5\n"));
  auto crlf = ReadAll(MakePipeline(Libffm()), dir.File("crlf.ffm", "1 0:1:1\r\n\r\n0 1:2:0.5"));
  ASSERT_TRUE(lf.ok() && crlf.ok()) << crlf.status().message();
  EXPECT_EQ(lf->labels, crlf->labels);
  EXPECT_EQ(lf->features, crlf->features);
  EXPECT_EQ(crlf->rows(), 2u);
}

TEST(Libsvm, EachIndexItsOwnFieldByDefault) {
  TempDir dir;
  auto rows = ReadAll(MakePipeline(Libsvm()), dir.File("a.svm", "1 3:1 7:0.5\n-1:3 2:1\n"));
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->labels, (std::vector<float>{1, 0}));
  EXPECT_EQ(rows->weights, (std::vector<float>{1, 3}));
  EXPECT_EQ(rows->features, (std::vector<Feature>{{3, 3, 1.0f}, {7, 7, 0.5f}, {2, 2, 1.0f}}));
}

TEST(Libsvm, FieldMapGivesFields) {
  TempDir dir;
  auto o = Libsvm();
  o.field_map_path = dir.File("map.txt", "# comment\nuser 0 9\r\nitem 10 19\n\nctx 20 20\n");
  auto p = MakePipeline(o);
  EXPECT_EQ(p.num_fields(), 3u);
  EXPECT_EQ(p.field_names(), (std::vector<std::string>{"user", "item", "ctx"}));
  EXPECT_EQ(p.index_space(), 21u);
  auto rows = ReadAll(p, dir.File("a.libfm", "1 4:1 15:1 20:1\n"));
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->features, (std::vector<Feature>{{0, 4, 1.0f}, {1, 15, 1.0f}, {2, 20, 1.0f}}));
}

TEST(Libsvm, FieldMapErrors) {
  TempDir dir;
  auto o = Libsvm();
  o.field_map_path = dir.File("bad.txt", "user 0 9\nitem 5 12\n");
  auto p = FeaturePipeline::Create(o);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(), o.field_map_path + ": field map: ranges of 'user' and 'item' overlap at 5");
  o.field_map_path = dir.File("bad2.txt", "user 0\n");
  p = FeaturePipeline::Create(o);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(), o.field_map_path + ":1: expected 'name lo hi' (token 'user 0')");
}

TEST(Format, AutoDetectsLibffmAndLibsvmByContent) {
  TempDir dir;
  auto p = MakePipeline(PipelineOptions{});
  auto ffm = ReadAll(p, dir.File("x.txt", "1 0:1:1\n"));
  auto svm = ReadAll(p, dir.File("y.txt", "1 5:1\n"));
  ASSERT_TRUE(ffm.ok() && svm.ok());
  EXPECT_EQ(ffm->features[0], (Feature{0, 1, 1.0f}));
  EXPECT_EQ(svm->features[0], (Feature{5, 5, 1.0f}));
  EXPECT_EQ(ParseInputFormat("libfm").value(), InputFormat::kLibsvm);
  EXPECT_FALSE(ParseInputFormat("parquet").ok());
}

// ---- malformed input: one table, exact messages --------------------------

struct BadCase {
  const char* format;  // "ffm", "svm", "svm+map", "csv"
  std::string line;
  std::string message;  // after "path:2: "
};

const char kCsvSchema[] = R"({"header": false, "columns": [
  {"name": "y", "type": "label"}, {"name": "c", "type": "categorical"},
  {"name": "n", "type": "numeric"}]})";

class Malformed : public ::testing::TestWithParam<BadCase> {};

TEST_P(Malformed, GivesFileLineProblemToken) {
  const BadCase& c = GetParam();
  TempDir dir;
  PipelineOptions o;
  std::string good;
  std::string fmt = c.format;
  if (fmt == "ffm") {
    o.format = InputFormat::kLibffm;
    good = "1 0:1:1";
  } else if (fmt == "svm" || fmt == "svm+map") {
    o.format = InputFormat::kLibsvm;
    if (fmt == "svm+map") o.field_map_path = dir.File("map.txt", "a 0 9\n");
    good = "1 1:1";
  } else {
    o.schema_path = dir.File("s.json", kCsvSchema);
    good = "1,a,2";
  }
  auto p = MakePipeline(o);
  auto path = dir.File("data", good + "\n" + c.line + "\n" + good + "\n");
  auto rows = ReadAll(p, path);
  ASSERT_FALSE(rows.ok()) << c.line;
  EXPECT_EQ(rows.status().code(), StatusCode::kDataError);
  EXPECT_EQ(rows.status().message(), path + ":2: " + c.message);

  // Skipping: the line is counted, remembered, and reading goes on.
  ReadOptions skip;
  skip.skip_bad_lines = true;
  ReadStats stats;
  auto kept = ReadAll(p, path, skip, &stats);
  ASSERT_TRUE(kept.ok()) << kept.status().message();
  EXPECT_EQ(kept->rows(), 2u);
  EXPECT_EQ(stats.bad_lines, 1u);
  ASSERT_EQ(stats.first_errors.size(), 1u);
  EXPECT_EQ(stats.first_errors[0], path + ":2: " + c.message);
}

INSTANTIATE_TEST_SUITE_P(
    Table, Malformed,
    ::testing::Values(
        BadCase{"ffm", "1 1:2", "missing ':' in feature (token '1:2')"},
        BadCase{"ffm", "1 0:1:1 17", "missing ':' in feature (token '17')"},
        BadCase{"ffm", "1 1:2:3:4", "too many ':' in feature (token '1:2:3:4')"},
        BadCase{"ffm", "1 a:2:1", "invalid field id (token 'a:2:1')"},
        BadCase{"ffm", "1 -1:2:1", "invalid field id (token '-1:2:1')"},
        BadCase{"ffm", "1 :2:1", "invalid field id (token ':2:1')"},
        BadCase{"ffm", "1 4294967296:2:1", "field id out of range (token '4294967296:2:1')"},
        BadCase{"ffm", "1 1:99999999999:1", "feature index out of range (token '1:99999999999:1')"},
        BadCase{"ffm", "1 1::1", "invalid feature index (token '1::1')"},
        BadCase{"ffm", "1 1:2:abc", "invalid feature value (token '1:2:abc')"},
        BadCase{"ffm", "1 1:2:", "invalid feature value (token '1:2:')"},
        BadCase{"ffm", "1 1:2:0.5x", "invalid feature value (token '1:2:0.5x')"},
        BadCase{"ffm", "1 1:2:nan", "non-finite feature value (token '1:2:nan')"},
        BadCase{"ffm", "1 1:2:-inf", "non-finite feature value (token '1:2:-inf')"},
        BadCase{"ffm", "1 1:2:1e999", "non-finite feature value (token '1:2:1e999')"},
        BadCase{"ffm", "yes 1:2:1", "invalid label (token 'yes')"},
        BadCase{"ffm", "nan 1:2:1", "invalid label (token 'nan')"},
        BadCase{"ffm", "1:x 1:2:1", "invalid weight (token '1:x')"},
        BadCase{"ffm", "1:-2 1:2:1", "invalid weight (token '1:-2')"},
        BadCase{"ffm", "1:2:3 1:2:1", "invalid weight (token '1:2:3')"},
        BadCase{"ffm", "1 0:1:" + std::string(60, '9'),
                "non-finite feature value (token '0:1:" + std::string(36, '9') + "...')"},
        BadCase{"svm", "1 3", "missing ':' in feature (token '3')"},
        BadCase{"svm", "1 3:1:1", "too many ':' in feature (token '3:1:1')"},
        BadCase{"svm", "1 x:1", "invalid feature index (token 'x:1')"},
        BadCase{"svm", "1 3:inf", "non-finite feature value (token '3:inf')"},
        BadCase{"svm+map", "1 10:1", "feature index not covered by the field map (token '10:1')"},
        BadCase{"csv", "1,a", "expected 3 columns, found 2 (token '1,a')"},
        BadCase{"csv", "1,a,2,3", "expected 3 columns, found 4 (token '1,a,2,3')"},
        BadCase{"csv", "1,\xff\xfe,2", "invalid UTF-8 in column 'c' (token '\xff\xfe')"},
        BadCase{"csv", "1,\xed\xa0\x80,2", "invalid UTF-8 in column 'c' (token '\xed\xa0\x80')"},
        BadCase{"csv", "x,a,2", "invalid label in column 'y' (token 'x')"},
        BadCase{"csv", ",a,2", "missing label in column 'y' (token '')"},
        BadCase{"csv", "1,a,abc", "invalid number in column 'n' (token 'abc')"},
        BadCase{"csv", "1,a,NaN", "non-finite number in column 'n' (token 'NaN')"},
        BadCase{"csv", "1,\"a,2", "unterminated or misplaced quote (token '1,\"a,2')"},
        BadCase{"csv", "1,\"a\"b,2", "unterminated or misplaced quote (token '1,\"a\"b,2')"}));

TEST(Malformed, EmptyFileIsAnError) {
  TempDir dir;
  for (const char* content : {"", "\n\n", "\r\n"}) {
    auto path = dir.File("empty.ffm", content);
    auto rows = ReadAll(MakePipeline(Libffm()), path);
    ASSERT_FALSE(rows.ok());
    EXPECT_EQ(rows.status().code(), StatusCode::kDataError);
    EXPECT_EQ(rows.status().message(), path + ": empty file (no examples)");
  }
}

TEST(Malformed, MissingFileIsAnIOError) {
  auto src = MakePipeline(Libffm()).Open("/nonexistent/x.ffm", {});
  ASSERT_FALSE(src.ok());
  EXPECT_EQ(src.status().code(), StatusCode::kIOError);
}

TEST(Malformed, KeepsOnlyTheFirstFewMessages) {
  TempDir dir;
  std::string content;
  for (int i = 0; i < 20; ++i) content += "1 0:1:1\nbad\n";
  ReadOptions skip;
  skip.skip_bad_lines = true;
  skip.max_reported_errors = 3;
  ReadStats stats;
  auto path = dir.File("a.ffm", content);
  auto rows = ReadAll(MakePipeline(Libffm()), path, skip, &stats);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->rows(), 20u);
  EXPECT_EQ(stats.bad_lines, 20u);
  ASSERT_EQ(stats.first_errors.size(), 3u);
  EXPECT_EQ(stats.first_errors[2], path + ":6: invalid label (token 'bad')");
}

// ---- compression ----------------------------------------------------------

std::string SampleLibffm(int rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s;
  for (int r = 0; r < rows; ++r) {
    s += (rng() % 4 == 0) ? "1" : "0";
    for (int f = 0; f < 39; ++f) {
      s += ' ' + std::to_string(f) + ':' + std::to_string(rng() % 1000000) + ':' +
           (rng() % 3 ? std::string("1") : std::to_string((rng() % 10000) / 10000.0).substr(0, 6));
    }
    s += r % 7 == 0 ? "\r\n" : "\n";
  }
  return s;
}

void WriteGzip(const std::string& path, const std::string& content) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  // Two members: readers must handle concatenated gzip streams.
  size_t half = content.size() / 2;
  ASSERT_EQ(gzwrite(f, content.data(), static_cast<unsigned>(half)), static_cast<int>(half));
  ASSERT_EQ(gzclose(f), Z_OK);
  f = gzopen(path.c_str(), "ab");
  ASSERT_EQ(gzwrite(f, content.data() + half, static_cast<unsigned>(content.size() - half)),
            static_cast<int>(content.size() - half));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::string Zstd(const std::string& content) {
  std::string out(ZSTD_compressBound(content.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), content.data(), content.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

TEST(Compression, GzipAndZstdReadLikePlainDetectedByMagic) {
  TempDir dir;
  const std::string content = SampleLibffm(3000, 1);
  auto plain = ReadAll(MakePipeline(Libffm()), dir.File("plain.ffm", content));
  ASSERT_TRUE(plain.ok());
  WriteGzip(dir.Path("data.ffm.gz"), content);
  std::string gz_bytes;
  {
    std::ifstream in(dir.Path("data.ffm.gz"), std::ios::binary);
    gz_bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  // Extensions lie on purpose: detection is by magic bytes.
  auto gz_noext = dir.File("gz_as_plain.ffm", gz_bytes);
  auto zst = dir.File("zst_as_plain.ffm", Zstd(content));
  for (const std::string& path : {dir.Path("data.ffm.gz"), gz_noext, zst}) {
    ReadStats stats;
    auto rows = ReadAll(MakePipeline(Libffm()), path, {}, &stats);
    ASSERT_TRUE(rows.ok()) << path << ": " << rows.status().message();
    EXPECT_EQ(rows->labels, plain->labels) << path;
    EXPECT_EQ(rows->features, plain->features) << path;
    EXPECT_EQ(stats.bytes, content.size()) << path;
  }
}

TEST(Compression, TruncatedStreamsAreErrorsNotHangs) {
  TempDir dir;
  const std::string content = SampleLibffm(500, 2);
  std::string z = Zstd(content);
  auto zpath = dir.File("cut.zst", z.substr(0, z.size() / 2));
  auto rows = ReadAll(MakePipeline(Libffm()), zpath);
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().message(), zpath + ": truncated zstd stream");

  WriteGzip(dir.Path("full.gz"), content);
  std::ifstream in(dir.Path("full.gz"), std::ios::binary);
  std::string gz((std::istreambuf_iterator<char>(in)), {});
  auto gpath = dir.File("cut.gz", gz.substr(0, gz.size() / 3));
  rows = ReadAll(MakePipeline(Libffm()), gpath);
  ASSERT_FALSE(rows.ok());
  EXPECT_NE(rows.status().message().find(gpath + ": corrupt gzip stream"), std::string::npos)
      << rows.status().message();
}

// ---- threads ----------------------------------------------------------------

TEST(Threads, ParallelParseEqualsSerial) {
  TempDir dir;
  std::string content = SampleLibffm(12000, 3);  // several 1 MiB chunks
  content += "bad line\n" + SampleLibffm(10, 4) + "1 0:1:1";  // a bad line and no final newline
  auto path = dir.File("big.ffm", content);
  ReadOptions read;
  read.skip_bad_lines = true;
  ReadStats serial_stats;
  auto serial = ReadAll(MakePipeline(Libffm()), path, read, &serial_stats, 1000);
  ASSERT_TRUE(serial.ok());
  EXPECT_EQ(serial->rows(), 12011u);
  for (int threads : {2, 3}) {
    read.threads = threads;
    ReadStats stats;
    auto parallel = ReadAll(MakePipeline(Libffm()), path, read, &stats, 1000);
    ASSERT_TRUE(parallel.ok());
    EXPECT_EQ(parallel->labels, serial->labels);
    EXPECT_EQ(parallel->offsets, serial->offsets);
    EXPECT_EQ(parallel->features, serial->features);
    EXPECT_EQ(stats.first_errors, serial_stats.first_errors);
    EXPECT_EQ(stats.bytes, content.size());
    EXPECT_EQ(stats.max_index, serial_stats.max_index);
  }
  // Without skipping, the error is the same first bad line.
  read.skip_bad_lines = false;
  read.threads = 2;
  auto err = ReadAll(MakePipeline(Libffm()), path, read);
  ASSERT_FALSE(err.ok());
  EXPECT_EQ(err.status().message(), path + ":12001: invalid label (token 'bad')");
}

TEST(Threads, RewindRestartsTheStream) {
  TempDir dir;
  auto path = dir.File("a.ffm", SampleLibffm(5000, 5));
  ReadOptions read;
  read.threads = 2;
  auto src = MakePipeline(Libffm()).Open(path, read);
  ASSERT_TRUE(src.ok());
  ExampleBlock a, b;
  ASSERT_EQ((*src)->Next(&a, 100).value(), 100u);
  ASSERT_TRUE((*src)->Rewind().ok());
  ASSERT_EQ((*src)->Next(&b, 100).value(), 100u);
  EXPECT_EQ(a.features, b.features);
  EXPECT_EQ((*src)->stats().rows > 0, true);
  // Destroying a source in the middle of a file must not hang.
}

}  // namespace
}  // namespace fieldfm

namespace fieldfm {
namespace {

// Random garbage never crashes or hangs a reader; with skipping it ends cleanly.
TEST(Robustness, RandomBytesNeverCrash) {
  testing::TempDir dir;
  std::mt19937 rng(11);
  const char alphabet[] = "0123456789:: \t\n\r,.-+eE\"|abcnaif\xff\xc3";
  PipelineOptions csv;
  csv.schema_path = dir.File("s.json", kCsvSchema);
  for (int round = 0; round < 40; ++round) {
    std::string content;
    const int len = static_cast<int>(rng() % 3000);
    for (int i = 0; i < len; ++i) content += alphabet[rng() % (sizeof(alphabet) - 1)];
    auto path = dir.File("junk" + std::to_string(round), content);
    for (const PipelineOptions& o : {Libffm(), Libsvm(), csv}) {
      for (bool skip : {false, true}) {
        ReadOptions read;
        read.skip_bad_lines = skip;
        read.threads = 1 + round % 2;
        auto rows = testing::ReadAll(testing::MakePipeline(o), path, read);
        if (!rows.ok()) {
          EXPECT_EQ(rows.status().code(), StatusCode::kDataError) << rows.status().message();
        }
      }
    }
  }
}

}  // namespace
}  // namespace fieldfm
