#include "fieldfm/cache.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cctype>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <fstream>
#include <set>

#include "data/cache_format.h"
#include "fieldfm/data.h"
#include "data/shuffle.h"

namespace fieldfm {
namespace {

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("fieldfm_cache_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

// In-memory rows; hands them out in chunks of `chunk` rows to exercise block re-assembly.
class VectorSource : public ExampleSource {
 public:
  VectorSource(ExampleBlock rows, size_t chunk) : rows_(std::move(rows)), chunk_(chunk) {}
  Result<size_t> Next(ExampleBlock* out, size_t max_rows) override {
    out->clear();
    size_t n = std::min({max_rows, chunk_, rows_.rows() - pos_});
    for (size_t i = 0; i < n; ++i, ++pos_) out->add(rows_.labels[pos_], rows_.weights[pos_], rows_.row(pos_));
    stats_.rows += n;
    return n;
  }
  Status Rewind() override {
    pos_ = 0;
    return Status::Ok();
  }
  const ReadStats& stats() const override { return stats_; }

 private:
  ExampleBlock rows_;
  size_t chunk_, pos_ = 0;
  ReadStats stats_;
};

class FailingSource : public ExampleSource {
 public:
  Result<size_t> Next(ExampleBlock* out, size_t) override {
    out->clear();
    if (calls_++ == 0) {
      Feature f{0, 1, 1.0f};
      out->add(1, 1, std::span<const Feature>(&f, 1));
      return size_t{1};
    }
    return Status::DataError("in.ffm:2: missing ':' (token 'x')");
  }
  Status Rewind() override { return Status::Ok(); }
  const ReadStats& stats() const override { return stats_; }

 private:
  int calls_ = 0;
  ReadStats stats_;
};

// Rows with varying lengths (including empty rows), labels and weights.
ExampleBlock MakeRows(size_t n, uint64_t seed) {
  ExampleBlock b;
  Rng rng(seed);
  std::vector<Feature> feats;
  for (size_t r = 0; r < n; ++r) {
    feats.clear();
    size_t len = rng.Below(6);
    for (size_t j = 0; j < len; ++j)
      feats.push_back(Feature{static_cast<uint32_t>(j), static_cast<uint32_t>(rng.Below(1000)), static_cast<float>(rng.Uniform())});
    b.add(static_cast<float>(rng.Below(2)), 1.0f + static_cast<float>(rng.Below(5)), feats);
  }
  return b;
}

struct Row {
  float label, weight;
  std::vector<Feature> feats;
  bool operator==(const Row&) const = default;
  bool operator<(const Row& o) const {
    if (label != o.label) return label < o.label;
    if (weight != o.weight) return weight < o.weight;
    return std::lexicographical_compare(feats.begin(), feats.end(), o.feats.begin(), o.feats.end(),
                                        [](const Feature& a, const Feature& b) {
                                          return std::tie(a.field, a.index, a.value) < std::tie(b.field, b.index, b.value);
                                        });
  }
};

std::vector<Row> ReadAll(ExampleSource& src, size_t batch) {
  std::vector<Row> rows;
  ExampleBlock b;
  while (true) {
    auto got = src.Next(&b, batch);
    EXPECT_TRUE(got.ok()) << got.status().ToString();
    if (!got.ok() || *got == 0) break;
    for (size_t r = 0; r < b.rows(); ++r) {
      auto f = b.row(r);
      rows.push_back(Row{b.labels[r], b.weights[r], {f.begin(), f.end()}});
    }
  }
  return rows;
}

std::vector<Row> Rows(const ExampleBlock& b) {
  std::vector<Row> rows;
  for (size_t r = 0; r < b.rows(); ++r) rows.push_back(Row{b.labels[r], b.weights[r], {b.row(r).begin(), b.row(r).end()}});
  return rows;
}

constexpr CacheKey kKey{1234, 5678, 42};

std::string BuildTestCache(const std::string& name, const ExampleBlock& rows, size_t block_rows, CacheKey key = kKey) {
  std::string path = TempPath(name);
  VectorSource src(rows, 7);
  Status st = BuildCache(src, key, path, block_rows);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return path;
}

TEST(Cache, RoundTripIsIdenticalAndHeaderStatsAreRight) {
  ExampleBlock rows = MakeRows(1000, 1);
  std::string path = BuildTestCache("roundtrip", rows, 64);
  auto src = OpenCache(path);
  ASSERT_TRUE(src.ok()) << src.status().ToString();
  const CacheInfo& info = (*src)->info();
  EXPECT_EQ(info.rows, 1000u);
  EXPECT_EQ(info.features, rows.features.size());
  EXPECT_EQ((*src)->num_blocks(), (1000 + 63) / 64);
  EXPECT_EQ(info.key, kKey);
  uint32_t max_field = 0;
  uint64_t max_index = 0;
  for (const Feature& f : rows.features) {
    max_field = std::max(max_field, f.field + 1);
    max_index = std::max<uint64_t>(max_index, f.index + 1);
  }
  EXPECT_EQ(info.max_field, max_field);
  EXPECT_EQ(info.max_index, max_index);
  EXPECT_EQ((*src)->stats().max_index, max_index);
  double label_sum = 0;
  for (float y : rows.labels) label_sum += y;
  EXPECT_DOUBLE_EQ(info.label_sum, label_sum);
  EXPECT_EQ(info.label_min, 0.0);
  EXPECT_EQ(info.label_max, 1.0);

  EXPECT_EQ(ReadAll(**src, 100), Rows(rows));
  EXPECT_EQ((*src)->stats().rows, 1000u);
  // A second epoch after Rewind gives the same rows; odd batch sizes cross block borders.
  ASSERT_TRUE((*src)->Rewind().ok());
  EXPECT_EQ(ReadAll(**src, 33), Rows(rows));
  std::filesystem::remove(path);
}

TEST(Cache, BlockViewsAreZeroCopyOverTheMapping) {
  ExampleBlock rows = MakeRows(300, 2);
  std::string path = BuildTestCache("views", rows, 128);
  auto src = OpenCache(path);
  ASSERT_TRUE(src.ok());
  size_t r0 = 0;
  for (size_t b = 0; b < (*src)->num_blocks(); ++b) {
    auto v = (*src)->block(b);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->offsets[0], 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v->features) % alignof(Feature), 0u);
    for (size_t r = 0; r < v->rows; ++r, ++r0) {
      EXPECT_EQ(v->labels[r], rows.labels[r0]);
      auto a = v->row(r);
      auto e = rows.row(r0);
      ASSERT_TRUE(std::equal(a.begin(), a.end(), e.begin(), e.end()));
    }
  }
  EXPECT_EQ(r0, 300u);
  EXPECT_FALSE((*src)->block((*src)->num_blocks()).ok());
  std::filesystem::remove(path);
}

// The rows NextViews gives, copied out.
std::vector<Row> ReadAllViews(CacheSource& src, size_t batch, std::vector<size_t>* sizes = nullptr) {
  std::vector<Row> rows;
  std::vector<BatchView> segments;
  while (true) {
    auto got = src.NextViews(&segments, batch);
    EXPECT_TRUE(got.ok()) << got.status().ToString();
    if (!got.ok() || *got == 0) break;
    size_t n = 0;
    for (const BatchView& v : segments)
      for (size_t r = 0; r < v.rows; ++r, ++n) {
        auto f = v.row(r);
        rows.push_back(Row{v.labels[r], v.weights[r], {f.begin(), f.end()}});
      }
    EXPECT_EQ(n, *got);
    if (sizes) sizes->push_back(n);
  }
  return rows;
}

TEST(Cache, NextViewsGiveNextsRowsInPlace) {
  ExampleBlock rows = MakeRows(1000, 3);
  std::string path = BuildTestCache("nextviews", rows, 64);
  auto src = OpenCache(path);
  ASSERT_TRUE(src.ok());
  // Batches larger and smaller than a stored block, crossing block borders.
  for (size_t batch : {100u, 33u, 64u, 5000u}) {
    ASSERT_TRUE((*src)->Rewind().ok());
    std::vector<size_t> sizes;
    EXPECT_EQ(ReadAllViews(**src, batch, &sizes), Rows(rows)) << batch;
    ASSERT_FALSE(sizes.empty());
    for (size_t i = 0; i + 1 < sizes.size(); ++i) EXPECT_EQ(sizes[i], batch);
    EXPECT_EQ((*src)->stats().rows, 1000u);
  }
  // Blocks verified ahead on 3 threads: the same rows in the same batches.
  for (size_t batch : {100u, 33u, 5000u}) {
    ASSERT_TRUE((*src)->Rewind().ok());
    (*src)->set_verify_threads(3);
    std::vector<size_t> sizes;
    EXPECT_EQ(ReadAllViews(**src, batch, &sizes), Rows(rows)) << batch;
    for (size_t i = 0; i + 1 < sizes.size(); ++i) EXPECT_EQ(sizes[i], batch);
  }
  (*src)->set_verify_threads(1);
  // The views are of the block read into a buffer (not the mapping, see
  // cache.cpp): the same features as block()'s, at another address.
  ASSERT_TRUE((*src)->Rewind().ok());
  std::vector<BatchView> segments;
  ASSERT_TRUE((*src)->NextViews(&segments, 10).ok());
  ASSERT_EQ(segments.size(), 1u);
  const BatchView mapped = *(*src)->block(0);
  EXPECT_NE(segments[0].features, mapped.features);
  ASSERT_EQ(segments[0].offsets[10], mapped.offsets[10]);
  EXPECT_EQ(std::memcmp(segments[0].features, mapped.features, mapped.offsets[10] * sizeof(Feature)), 0);
  // Shuffled order is the trainer's job: refused, not silently unshuffled.
  (*src)->SetShuffle(1, 0);
  EXPECT_EQ((*src)->NextViews(&segments, 10).status().code(), StatusCode::kInvalidArgument);
  std::filesystem::remove(path);
}

// set_views_kept(2): a call's views stay intact through the next call, as
// the trainer's double buffer needs. With the default (1) the next call's
// block is read into the freed buffer, so the check below can fail.
TEST(Cache, ViewsKeptForTwoCallsSurviveTheNextRead) {
  ExampleBlock rows = MakeRows(1000, 3);
  std::string path = BuildTestCache("viewskept", rows, 64);
  auto src = OpenCache(path);
  ASSERT_TRUE(src.ok());
  const BatchView stored0 = *(*src)->block(0), stored1 = *(*src)->block(1);
  const size_t bytes0 = stored0.offsets[64] * sizeof(Feature);
  std::vector<BatchView> first, second;
  // Default: the second call's block 1 lands where block 0's view pointed.
  ASSERT_TRUE((*src)->NextViews(&first, 64).ok());
  ASSERT_TRUE((*src)->NextViews(&second, 64).ok());
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].features, second[0].features);
  EXPECT_EQ(std::memcmp(second[0].features, stored1.features, stored1.offsets[64] * sizeof(Feature)), 0);
  // Kept for two calls: block 0's view still reads block 0 after block 1 and
  // is released on the third call, whose block then reuses its buffer.
  ASSERT_TRUE((*src)->Rewind().ok());
  (*src)->set_views_kept(2);
  std::vector<BatchView> third;
  ASSERT_TRUE((*src)->NextViews(&first, 64).ok());
  ASSERT_TRUE((*src)->NextViews(&second, 64).ok());
  EXPECT_NE(first[0].features, second[0].features);
  EXPECT_EQ(std::memcmp(first[0].features, stored0.features, bytes0), 0);
  EXPECT_EQ(std::memcmp(second[0].features, stored1.features, stored1.offsets[64] * sizeof(Feature)), 0);
  ASSERT_TRUE((*src)->NextViews(&third, 64).ok());
  EXPECT_EQ(third[0].features, first[0].features);
  // The rest of the pass still gives every row once, in order.
  ASSERT_TRUE((*src)->Rewind().ok());
  EXPECT_EQ(ReadAllViews(**src, 100), Rows(rows));
  std::filesystem::remove(path);
}

// Resident kB of this process's mapping of `path` (0 if not mapped).
size_t MappedResidentKb(const std::string& path) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in_mapping = false;
  size_t kb = 0;
  while (std::getline(smaps, line)) {
    // A mapping's header line starts with its address range "lo-hi"; attribute lines ("Rss:   12 kB") do not.
    const bool header = !line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
                        line.find('-') < line.find(' ');
    if (header) {
      in_mapping = line.size() >= path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0;
    } else if (in_mapping && line.starts_with("Rss:")) {
      kb += std::stoul(line.substr(4));
    }
  }
  return kb;
}

TEST(Cache, APassDoesNotKeepTheReadBlocksResident) {
  ExampleBlock rows = MakeRows(40000, 9);
  std::string path = BuildTestCache("resident", rows, 2048);
  const size_t file_kb = std::filesystem::file_size(path) / 1024;
  ASSERT_GT(file_kb, 1000u);
  auto src = OpenCache(path);
  ASSERT_TRUE(src.ok());
  // Block views fault the pages in; a pass through Next then releases them.
  for (size_t b = 0; b < (*src)->num_blocks(); ++b) ASSERT_TRUE((*src)->block(b).ok());
  EXPECT_GT(MappedResidentKb(path), file_kb / 2);
  EXPECT_EQ(ReadAll(**src, 1000), Rows(rows));
  EXPECT_LT(MappedResidentKb(path), file_kb / 8);
  // Released pages come back from the file: a second pass reads the same rows.
  ASSERT_TRUE((*src)->Rewind().ok());
  EXPECT_EQ(ReadAll(**src, 777), Rows(rows));
  // Views too: each call drops the blocks the previous one finished.
  ASSERT_TRUE((*src)->Rewind().ok());
  for (size_t b = 0; b < (*src)->num_blocks(); ++b) ASSERT_TRUE((*src)->block(b).ok());
  EXPECT_EQ(ReadAllViews(**src, 1000), Rows(rows));
  EXPECT_LT(MappedResidentKb(path), file_kb / 8);
  std::filesystem::remove(path);
}

TEST(Cache, EmptySourceGivesAnEmptyValidCache) {
  std::string path = BuildTestCache("empty", ExampleBlock{}, 16);
  auto src = OpenCache(path);
  ASSERT_TRUE(src.ok()) << src.status().ToString();
  EXPECT_EQ((*src)->info().rows, 0u);
  ExampleBlock b;
  auto got = (*src)->Next(&b, 10);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, 0u);
  std::filesystem::remove(path);
}

TEST(Cache, SourceErrorLeavesNoFileBehind) {
  std::string path = TempPath("failing");
  FailingSource src;
  Status st = BuildCache(src, kKey, path, 4);
  EXPECT_EQ(st.code(), StatusCode::kDataError);
  EXPECT_NE(st.message().find("in.ffm:2"), std::string::npos) << st.message();
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(Cache, FreshnessFollowsSizeMtimeAndFingerprint) {
  std::string data = TempPath("source.ffm");
  { std::ofstream(data) << "1 0:1:1\n"; }
  auto key = CacheKeyForFile(data, 99);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(key->source_size, 8u);
  std::string path = BuildTestCache("fresh", MakeRows(10, 3), 4, *key);

  auto fresh = CacheIsFresh(path, *key);
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE(*fresh);

  CacheKey other_fp = *key;
  other_fp.fingerprint = 100;
  EXPECT_FALSE(*CacheIsFresh(path, other_fp));

  // Same size, new mtime.
  struct timespec times[2] = {{0, UTIME_OMIT}, {key->source_mtime_ns / 1000000000 + 10, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, data.c_str(), times, 0), 0);
  auto touched = CacheKeyForFile(data, 99);
  ASSERT_TRUE(touched.ok());
  EXPECT_EQ(touched->source_size, key->source_size);
  EXPECT_FALSE(*CacheIsFresh(path, *touched));

  // New size.
  { std::ofstream(data, std::ios::app) << "0 0:2:1\n"; }
  auto grown = CacheKeyForFile(data, 99);
  ASSERT_TRUE(grown.ok());
  EXPECT_NE(grown->source_size, key->source_size);
  EXPECT_FALSE(*CacheIsFresh(path, *grown));

  // Missing cache: not fresh, not an error.
  auto missing = CacheIsFresh(TempPath("does_not_exist"), *key);
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(*missing);
  std::filesystem::remove(path);
  std::filesystem::remove(data);
}

TEST(Cache, OpenOrBuildRebuildsOnlyWhenStale) {
  std::string path = TempPath("openorbuild");
  ExampleBlock rows = MakeRows(50, 4);
  int builds = 0;
  SourceFactory factory = [&]() -> Result<std::unique_ptr<ExampleSource>> {
    ++builds;
    return std::unique_ptr<ExampleSource>(new VectorSource(rows, 50));
  };
  bool rebuilt = false;
  auto a = OpenOrBuildCache(path, kKey, factory, 16, &rebuilt);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_TRUE(rebuilt);
  auto b = OpenOrBuildCache(path, kKey, factory, 16, &rebuilt);
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(rebuilt);
  EXPECT_EQ(builds, 1);
  CacheKey changed = kKey;
  changed.fingerprint ^= 1;
  auto c = OpenOrBuildCache(path, changed, factory, 16, &rebuilt);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(rebuilt);
  EXPECT_EQ(builds, 2);
  EXPECT_EQ((*c)->info().key, changed);
  EXPECT_EQ(ReadAll(**c, 64), Rows(rows));
  std::filesystem::remove(path);
}

TEST(CacheShuffle, DeterministicPermutationDifferentPerEpoch) {
  // Unique labels identify rows.
  ExampleBlock rows;
  for (int i = 0; i < 1000; ++i) {
    Feature f{0, static_cast<uint32_t>(i), 1.0f};
    rows.add(static_cast<float>(i), 1.0f, std::span<const Feature>(&f, 1));
  }
  std::string path = BuildTestCache("shuffle", rows, 100);
  auto src = OpenCache(path);
  ASSERT_TRUE(src.ok());
  auto order = [&](uint64_t seed, uint32_t epoch) {
    (*src)->SetShuffle(seed, epoch);
    std::vector<int> ids;
    for (const Row& r : ReadAll(**src, 37)) {
      EXPECT_EQ(r.feats.at(0).index, static_cast<uint32_t>(r.label));  // rows stay whole
      ids.push_back(static_cast<int>(r.label));
    }
    return ids;
  };
  std::vector<int> e0 = order(7, 0);
  ASSERT_EQ(e0.size(), 1000u);
  EXPECT_EQ(std::set<int>(e0.begin(), e0.end()).size(), 1000u);  // every row exactly once
  std::vector<int> identity(1000);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_NE(e0, identity);
  EXPECT_EQ(order(7, 0), e0);
  std::vector<int> e1 = order(7, 1);
  EXPECT_NE(e1, e0);
  EXPECT_EQ(std::set<int>(e1.begin(), e1.end()).size(), 1000u);
  EXPECT_NE(order(8, 0), e0);
  // Rewind replays the same epoch.
  (*src)->SetShuffle(7, 1);
  ExampleBlock first;
  ASSERT_TRUE((*src)->Next(&first, 1000).ok());
  ASSERT_TRUE((*src)->Rewind().ok());
  ExampleBlock again;
  ASSERT_TRUE((*src)->Next(&again, 1000).ok());
  EXPECT_EQ(first.labels, again.labels);
  // The block order and row orders a trainer sees agree with Next().
  std::vector<int> via_views;
  std::vector<uint32_t> rorder;
  for (uint32_t b : (*src)->block_order()) {
    auto v = (*src)->block(b);
    ASSERT_TRUE(v.ok());
    (*src)->RowOrder(b, &rorder);
    for (uint32_t r : rorder) via_views.push_back(static_cast<int>(v->labels[r]));
  }
  EXPECT_EQ(via_views, e1);
  (*src)->ClearShuffle();
  EXPECT_EQ(order(0, 0).size(), 1000u);
  (*src)->ClearShuffle();
  std::vector<int> seq;
  for (const Row& r : ReadAll(**src, 1000)) seq.push_back(static_cast<int>(r.label));
  EXPECT_EQ(seq, identity);
  std::filesystem::remove(path);
}

// --- damaged files ----------------------------------------------------------

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void WriteBytes(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

Status OpenAndReadAll(const std::string& path) {
  auto src = OpenCache(path);
  if (!src.ok()) return src.status();
  ExampleBlock b;
  while (true) {
    auto got = (*src)->Next(&b, 1000);
    if (!got.ok()) return got.status();
    if (*got == 0) return Status::Ok();
  }
}

class CacheDamage : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = BuildTestCache("damage", MakeRows(500, 5), 64);
    good_ = ReadBytes(path_);
  }
  void TearDown() override { std::filesystem::remove(path_); }
  void ExpectCorruption(const std::string& bytes, const std::string& what) {
    WriteBytes(path_, bytes);
    Status st = OpenAndReadAll(path_);
    EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
    EXPECT_NE(st.message().find(what), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(path_), std::string::npos) << st.message();
    auto fresh = CacheIsFresh(path_, kKey);
    ASSERT_TRUE(fresh.ok());
    EXPECT_FALSE(*fresh);
  }
  std::string path_, good_;
};

TEST_F(CacheDamage, IntactFileReads) {
  EXPECT_TRUE(OpenAndReadAll(path_).ok());
  EXPECT_TRUE(*CacheIsFresh(path_, kKey));
}

TEST_F(CacheDamage, TruncatedAtManyPoints) {
  for (size_t len : {size_t{0}, size_t{5}, size_t{100}, sizeof(cache_format::CacheHeader), good_.size() / 2, good_.size() - 1}) {
    SCOPED_TRACE(len);
    ExpectCorruption(good_.substr(0, len), "truncated");
  }
}

TEST_F(CacheDamage, BadMagic) {
  std::string bad = good_;
  bad[0] = 'X';
  ExpectCorruption(bad, "not a fieldfm cache");
  ExpectCorruption("1 0:1:1 1:2:1\n0 0:3:1\n", "not a fieldfm cache");  // a text file passed by mistake
}

TEST_F(CacheDamage, WrongVersion) {
  std::string bad = good_;
  uint32_t v = 99;
  std::memcpy(bad.data() + offsetof(cache_format::CacheHeader, version), &v, 4);
  ExpectCorruption(bad, "version 99");
}

// `bytes` (a version 2 file) as version `version` with XXH64 block
// checksums, the header checksum redone: what version 1 wrote.
std::string WithXxh64Blocks(std::string bytes, uint32_t version) {
  cache_format::CacheHeader h;
  std::memcpy(&h, bytes.data(), sizeof(h));
  for (uint64_t b = 0; b < h.num_blocks; ++b) {
    cache_format::BlockIndexEntry e;
    char* at = bytes.data() + h.index_offset + b * sizeof(e);
    std::memcpy(&e, at, sizeof(e));
    e.checksum = XXH64(bytes.data() + e.offset, cache_format::BlockLayout::For(e.rows, e.features).size, 0);
    std::memcpy(at, &e, sizeof(e));
  }
  h.version = version;
  h.checksum = 0;
  std::string hashed(reinterpret_cast<const char*>(&h), sizeof(h));
  hashed.append(bytes, h.index_offset, h.num_blocks * sizeof(cache_format::BlockIndexEntry));
  h.checksum = XXH64(hashed.data(), hashed.size(), 0);
  std::memcpy(bytes.data(), &h, sizeof(h));
  return bytes;
}

TEST_F(CacheDamage, Version1FilesStillReadAndTheirDamageIsCaught) {
  auto current = OpenCache(path_);
  ASSERT_TRUE(current.ok());
  EXPECT_EQ((*current)->info().version, cache_format::kVersion);
  const std::vector<Row> expected = ReadAll(**current, 100);
  const std::string v1 = WithXxh64Blocks(good_, 1);
  WriteBytes(path_, v1);
  auto old = OpenCache(path_);
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_EQ((*old)->info().version, 1u);
  EXPECT_EQ(ReadAll(**old, 100), expected);
  EXPECT_TRUE(*CacheIsFresh(path_, kKey));
  std::string bad = v1;
  bad[sizeof(cache_format::CacheHeader) + 300] ^= 0x10;  // inside block 0
  WriteBytes(path_, bad);
  auto damaged = OpenCache(path_);
  ASSERT_TRUE(damaged.ok());
  EXPECT_EQ((*damaged)->block(0).status().code(), StatusCode::kCorruption);
  EXPECT_TRUE((*damaged)->block(1).ok());
  // The version picks the hash: XXH64 sums in a version 2 file do not pass.
  WriteBytes(path_, WithXxh64Blocks(good_, 2));
  auto mislabelled = OpenCache(path_);
  ASSERT_TRUE(mislabelled.ok());
  EXPECT_EQ((*mislabelled)->block(0).status().code(), StatusCode::kCorruption);
}

TEST_F(CacheDamage, HeaderAndIndexBitFlips) {
  std::string bad = good_;
  bad[offsetof(cache_format::CacheHeader, rows)] ^= 1;
  ExpectCorruption(bad, "checksum");
  bad = good_;
  bad[good_.size() - 20] ^= 0x40;  // inside the block index
  ExpectCorruption(bad, "checksum");
}

TEST_F(CacheDamage, BlockPayloadBitFlipIsCaughtOnRead) {
  std::string bad = good_;
  bad[sizeof(cache_format::CacheHeader) + 300] ^= 0x10;  // inside block 0
  WriteBytes(path_, bad);
  auto src = OpenCache(path_);
  ASSERT_TRUE(src.ok());  // header and index are intact
  EXPECT_EQ((*src)->block(0).status().code(), StatusCode::kCorruption);
  EXPECT_TRUE((*src)->block(1).ok());
  Status st = OpenAndReadAll(path_);
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_NE(st.message().find("block 0"), std::string::npos) << st.message();
}

// Blocks are read with pread: a cache cut short after it was opened is an
// I/O error naming the file and the block (a mapping would have died of
// SIGBUS on the missing pages).
TEST_F(CacheDamage, FileTruncatedAfterOpenIsAnErrorNotACrash) {
  WriteBytes(path_, good_);
  auto src = OpenCache(path_);
  ASSERT_TRUE(src.ok());
  std::filesystem::resize_file(path_, sizeof(cache_format::CacheHeader) + 64);
  std::vector<BatchView> segments;
  Status st = Status::Ok();
  for (;;) {
    auto n = (*src)->NextViews(&segments, 1000);
    if (!n.ok()) {
      st = n.status();
      break;
    }
    if (*n == 0) break;
  }
  EXPECT_EQ(st.code(), StatusCode::kIOError) << st.message();
  EXPECT_NE(st.message().find(path_), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("cannot read block 0"), std::string::npos) << st.message();
}

// Verifying ahead on several threads finds a damaged block before the views
// reach it; the error still comes with the view of that block (the rows
// before it are given), naming the file and the block.
TEST_F(CacheDamage, BlockVerifiedAheadIsReportedWhenReached) {
  cache_format::CacheHeader h;
  std::memcpy(&h, good_.data(), sizeof(h));
  ASSERT_GE(h.num_blocks, 3u);
  cache_format::BlockIndexEntry e;
  std::memcpy(&e, good_.data() + h.index_offset + 2 * sizeof(e), sizeof(e));
  std::string bad = good_;
  bad[e.offset + cache_format::BlockLayout::For(e.rows, e.features).features] ^= 0x10;  // a feature of block 2
  WriteBytes(path_, bad);
  auto src = OpenCache(path_);
  ASSERT_TRUE(src.ok());
  (*src)->set_verify_threads(4);
  std::vector<BatchView> segments;
  size_t rows_before = 0;
  Status st;
  while (true) {
    auto got = (*src)->NextViews(&segments, 10);
    if (!got.ok()) {
      st = got.status();
      break;
    }
    ASSERT_NE(*got, 0u) << "the damage went unnoticed";
    rows_before += *got;
  }
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_NE(st.message().find("block 2"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(path_), std::string::npos) << st.message();
  EXPECT_EQ(rows_before, 120u);  // blocks 0 and 1 hold rows [0, 128): the batch of rows [120, 130) reaches block 2
}

TEST(Cache, MissingFileIsNotFound) {
  auto src = OpenCache(TempPath("nope"));
  EXPECT_EQ(src.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace fieldfm

namespace fieldfm {
namespace {

TEST(Cache, APipelineReadsItsOwnCacheAsInputAndRefusesAnotherPipelines) {
  const std::string text = TempPath("pipeline_input.ffm");
  std::ofstream(text) << "1 0:3:1 1:17:0.5\n0 0:4:1 1:18:2\n1 0:3:1 1:19:1\n";
  PipelineOptions o;
  o.format = InputFormat::kLibffm;
  auto p = FeaturePipeline::Create(o);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  auto from_text = p->Open(text, ReadOptions{});
  ASSERT_TRUE(from_text.ok()) << from_text.status().ToString();
  const std::vector<Row> expected = ReadAll(**from_text, 2);
  ASSERT_EQ(expected.size(), 3u);

  const std::string cache = TempPath("pipeline_input.bin");
  auto src = p->Open(text, ReadOptions{});
  ASSERT_TRUE(src.ok());
  auto key = CacheKeyForFile(text, p->Fingerprint());
  ASSERT_TRUE(key.ok());
  ASSERT_TRUE(BuildCache(**src, *key, cache).ok());
  EXPECT_TRUE(IsCacheFile(cache));
  EXPECT_FALSE(IsCacheFile(text));
  EXPECT_FALSE(IsCacheFile(TempPath("no_such_file")));

  auto from_cache = p->Open(cache, ReadOptions{});
  ASSERT_TRUE(from_cache.ok()) << from_cache.status().ToString();
  EXPECT_EQ(ReadAll(**from_cache, 2), expected);

  // Another hash space: the cached indices would mean other features.
  o.hash_bits = 12;
  auto q = FeaturePipeline::Create(o);
  ASSERT_TRUE(q.ok());
  auto refused = q->Open(cache, ReadOptions{});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("another feature pipeline"), std::string::npos)
      << refused.status().message();
  EXPECT_NE(refused.status().message().find(cache), std::string::npos) << refused.status().message();
  std::filesystem::remove(text);
  std::filesystem::remove(cache);
}

TEST(Cache, FitWithAutoFormatTakesTheFormatTheCacheWasBuiltWith) {
  const std::string text = TempPath("fit_auto.txt");  // no extension: the format is sniffed
  std::ofstream(text) << "1 3:1 17:0.5\n0 4:1 18:2\n";
  const std::string cache = TempPath("fit_auto.bin");
  PipelineOptions svm;
  svm.format = InputFormat::kLibsvm;
  auto p = FeaturePipeline::Create(svm);
  ASSERT_TRUE(p.ok());
  auto src = p->Open(text, ReadOptions{});
  ASSERT_TRUE(src.ok()) << src.status().ToString();
  const std::vector<Row> expected = ReadAll(**src, 2);
  auto src2 = p->Open(text, ReadOptions{});
  auto key = CacheKeyForFile(text, p->Fingerprint());
  ASSERT_TRUE(src2.ok() && key.ok());
  ASSERT_TRUE(BuildCache(**src2, *key, cache).ok());

  // Sniffing the binary file as text would fail; Fit reads the cache's fingerprint instead.
  auto a = FeaturePipeline::Create(PipelineOptions{});
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(a->Fit(cache, ReadOptions{}).ok());
  EXPECT_EQ(a->Fingerprint(), p->Fingerprint());
  auto from_cache = a->Open(cache, ReadOptions{});
  ASSERT_TRUE(from_cache.ok()) << from_cache.status().ToString();
  EXPECT_EQ(ReadAll(**from_cache, 2), expected);

  // No sparse format with these flags matches: an error naming the file.
  PipelineOptions other;
  other.hash_bits = 12;
  auto b = FeaturePipeline::Create(other);
  ASSERT_TRUE(b.ok());
  const Status st = b->Fit(cache, ReadOptions{});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(cache), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("another feature pipeline"), std::string::npos) << st.message();
  std::filesystem::remove(text);
  std::filesystem::remove(cache);
}

}  // namespace
}  // namespace fieldfm
