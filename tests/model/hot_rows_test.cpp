// Per-thread copies of hot rows: which rows are hot, that a merge adds every
// thread's change, and that one thread training on copies writes the same
// bytes as training on the shared tables.
#include "model/hot_rows.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>

#include "model/network.h"

namespace fieldfm {
namespace {

TEST(HotIndex, MostFrequentAtLeastMinCountCapped) {
  //                       index: 0  1  2  3   4  5  6
  const std::vector<uint32_t> counts{5, 0, 9, 5, 20, 1, 7};
  auto hot = HotIndex::Build(counts, 5, 3);
  ASSERT_EQ(hot->size(), 3u);
  EXPECT_EQ(hot->indices(), (std::vector<uint32_t>{4, 2, 6}));  // 0 and 3 (count 5) do not fit the cap
  EXPECT_EQ(hot->Find(4), 0);
  EXPECT_EQ(hot->Find(2), 1);
  EXPECT_EQ(hot->Find(6), 2);
  for (uint64_t cold : {0, 1, 3, 5, 7, 1000000}) EXPECT_EQ(hot->Find(cold), -1) << cold;

  auto ties = HotIndex::Build(counts, 5, 10);
  EXPECT_EQ(ties->indices(), (std::vector<uint32_t>{4, 2, 6, 0, 3}));  // ties: the lower index first
  EXPECT_EQ(ties->Find(0), 3);
  EXPECT_EQ(ties->Find(3), 4);
  EXPECT_EQ(ties->Find(5), -1);

  EXPECT_EQ(HotIndex::Build(counts, 100, 10)->size(), 0u);
  EXPECT_EQ(HotIndex::Build(counts, 100, 10)->Find(4), -1);
}

TEST(HotIndex, WarmRowsFollowTheFrequentOnes) {
  //                       index: 0  1  2  3   4  5  6  7
  const std::vector<uint32_t> counts{5, 0, 9, 5, 20, 1, 7, 2};
  // Frequent: count >= 7, at most 2 (4, 2; 6 does not fit the cap and is
  // warm). Warm: count >= 2, at most 3 more (6, then 0 and 3 by index).
  auto hot = HotIndex::Build(counts, 7, 2, 2, 3);
  EXPECT_EQ(hot->frequent(), 2u);
  EXPECT_EQ(hot->indices(), (std::vector<uint32_t>{4, 2, 6, 0, 3}));
  for (uint32_t id = 0; id < 5; ++id) EXPECT_EQ(hot->Find(hot->indices()[id]), int32_t(id));
  EXPECT_EQ(hot->Find(7), -1);  // count 2, beyond the warm cap
  // No warm rows unless asked for; the warm floor may be above the frequent one.
  EXPECT_EQ(HotIndex::Build(counts, 7, 2)->size(), 2u);
  EXPECT_EQ(HotIndex::Build(counts, 5, 10, 9, 10)->indices(), (std::vector<uint32_t>{4, 2, 6, 0, 3}));
  EXPECT_EQ(HotIndex::Build(counts, 5, 10, 9, 10)->frequent(), 5u);
}

TEST(HotIndex, FindsEveryOneOfManyIndices) {
  std::vector<uint32_t> counts(50000, 0);
  std::mt19937_64 rng(3);
  for (auto& c : counts) c = uint32_t(rng() % 1000);
  auto hot = HotIndex::Build(counts, 900, 100000);
  size_t expected = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const int32_t id = hot->Find(i);
    if (counts[i] >= 900) {
      ++expected;
      ASSERT_GE(id, 0) << i;
      EXPECT_EQ(hot->indices()[id], i);
    } else {
      EXPECT_EQ(id, -1) << i;
    }
  }
  EXPECT_EQ(hot->size(), expected);
}

SparseTable MakeTable(uint64_t rows, uint32_t slots, uint32_t k, uint32_t state) {
  SparseTable t;
  t.rows = rows;
  t.slots = slots;
  t.k = k;
  t.state = state;
  t.data.resize(rows * t.row_stride());
  for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = 0.25f * float(i % 17);
  return t;
}

TEST(TableReplica, FrequentMergeLeavesWarmRowsInTheCopy) {
  SparseTable t = MakeTable(10, 1, 2, 1);
  const FloatVec before = t.data;
  // 7 is frequent, 2 warm.
  auto hot = HotIndex::Build(std::vector<uint32_t>{0, 0, 5, 0, 0, 0, 0, 9}, 8, 10, 5, 10);
  ASSERT_EQ(hot->frequent(), 1u);
  TableReplica a(&t, hot);
  a.Pull();
  const uint64_t n = t.row_stride();
  for (uint64_t j = 0; j < n; ++j) a.Row(2)[j] += 1.0f, a.Row(7)[j] += 2.0f;
  a.Merge(false);
  for (uint64_t j = 0; j < n; ++j) {
    EXPECT_FLOAT_EQ(t.row(7)[j], before[7 * n + j] + 2.0f) << j;
    EXPECT_EQ(t.row(2)[j], before[2 * n + j]) << j;  // not yet
  }
  a.Row(7)[0] += 1.0f;
  a.Merge(true);  // the warm row's change since Pull, the frequent row's since the last merge
  for (uint64_t j = 0; j < n; ++j) {
    EXPECT_FLOAT_EQ(t.row(2)[j], before[2 * n + j] + 1.0f) << j;
    EXPECT_FLOAT_EQ(t.row(7)[j], before[7 * n + j] + 2.0f + (j == 0 ? 1.0f : 0.0f)) << j;
  }
}

TEST(TableReplica, MergeAddsEveryCopysChange) {
  SparseTable t = MakeTable(10, 3, 2, 1);
  const FloatVec before = t.data;
  // Index 12 is beyond the table (another table may have it): no row.
  auto hot = HotIndex::Build(std::vector<uint32_t>{0, 0, 5, 0, 0, 0, 0, 9, 0, 0, 0, 0, 7}, 5, 10);
  TableReplica a(&t, hot), b(&t, hot);
  a.Pull();
  b.Pull();
  // Reads of hot rows go to the copy, the others to the table.
  EXPECT_NE(a.Row(2), t.row(2));
  EXPECT_NE(a.Row(2), b.Row(2));
  EXPECT_EQ(a.Row(3), t.row(3));
  EXPECT_EQ(std::memcmp(a.Row(7), t.row(7), t.row_stride() * sizeof(float)), 0);
  const uint64_t n = t.row_stride();
  for (uint64_t j = 0; j < n; ++j) {
    a.Row(2)[j] += 1.0f;
    b.Row(2)[j] += 2.0f;
    b.Row(7)[j] -= 0.5f;
  }
  t.row(2)[0] += 4.0f;  // a write straight to the table (the generic graph's) is kept too
  a.Merge();
  b.Merge();
  for (uint64_t j = 0; j < n; ++j) {
    EXPECT_FLOAT_EQ(t.row(2)[j], before[2 * n + j] + 3.0f + (j == 0 ? 4.0f : 0.0f)) << j;
    EXPECT_FLOAT_EQ(t.row(7)[j], before[7 * n + j] - 0.5f) << j;
    EXPECT_EQ(t.row(3)[j], before[3 * n + j]);
    EXPECT_EQ(b.Row(2)[j], t.row(2)[j]);  // after its merge a copy holds the table's value
  }
  // a merged before b: its copy has b's change only after the next Pull.
  a.Pull();
  EXPECT_EQ(std::memcmp(a.Row(7), t.row(7), n * sizeof(float)), 0);
}

TEST(DenseReplica, MergeAddsEveryCopysChange) {
  DenseParam p;
  p.w = {1.0f, 2.0f};
  p.s1 = {0.5f, 0.5f};
  DenseReplica a(&p), b(&p);
  a.Pull();
  b.Pull();
  a.local()->w[0] += 1.0f;
  a.local()->s1[1] += 0.25f;
  b.local()->w[0] += 0.5f;
  a.Merge();
  b.Merge();
  EXPECT_FLOAT_EQ(p.w[0], 2.5f);
  EXPECT_FLOAT_EQ(p.w[1], 2.0f);
  EXPECT_FLOAT_EQ(p.s1[1], 0.75f);
  EXPECT_FLOAT_EQ(b.local()->w[0], 2.5f);
}

// Rows whose fields each have one feature (the fused kernels' case), in a
// random field order.
ExampleBlock CleanRows(size_t n, uint32_t fields, uint32_t per_field, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  ExampleBlock b;
  for (size_t r = 0; r < n; ++r) {
    std::vector<Feature> feats;
    for (uint32_t f = 0; f < fields; ++f)
      // Skewed values: value 0 of each field in most rows.
      feats.push_back({f, f * per_field + (u(rng) < 0.6f ? 0 : uint32_t(rng() % per_field)), 0.5f + u(rng)});
    std::shuffle(feats.begin(), feats.end(), rng);
    b.add(u(rng) < 0.4f ? 1.0f : 0.0f, 1.0f, feats);
  }
  return b;
}

// One network trains 400 rows; with `hot` it trains on copies, merged every
// 60 rows and at the end; with `redirect` (lr, fm) it finds them through
// redirects in the linear table, installed for the training and restored.
ParamStore TrainOne(ModelType type, uint32_t k, OptimizerType opt, bool hot, bool redirect = false) {
  constexpr uint32_t kFields = 6, kPerField = 5;
  ModelSpec spec;
  spec.type = type;
  spec.k = k;
  spec.num_fields = kFields;
  spec.num_indices = kFields * kPerField;
  ParamStore store;
  OptimizerConfig c;
  c.type = c.dense_type = opt;
  c.lr = c.dense_lr = 0.1f;
  c.lambda_embedding = 1e-4f;
  store.state = StateCount(opt);
  auto net = Network::Build(spec, &store, false, 7);
  EXPECT_TRUE(net.ok());
  for (auto& [name, t] : store.sparse) InitState(c, &t);
  for (auto& [name, p] : store.dense) InitState(c, &p);
  std::mutex mu;
  std::unique_ptr<RedirectedRows> redirects;
  if (hot) {
    std::vector<uint32_t> counts(spec.num_indices, 1);
    for (uint32_t f = 0; f < kFields; ++f) {
      counts[f * kPerField] = 100;     // value 0 of each field: frequent, merged every 60 rows
      counts[f * kPerField + 1] = 30;  // value 1: warm, merged only at the end
    }
    auto index = HotIndex::Build(counts, 50, 100, 20, 100);
    EXPECT_EQ(index->frequent(), kFields);
    EXPECT_EQ(index->size(), 2 * kFields);
    EXPECT_TRUE((*net)->UseHotRows(index));
    if (redirect) {
      redirects = std::make_unique<RedirectedRows>(&store.sparse.at("linear"), index);
      EXPECT_TRUE((*net)->RedirectHotRows(redirects.get()));
      EXPECT_TRUE(redirects->Install());
      // The hot rows' first floats now name their copies; the others are untouched.
      const SparseTable& lin = store.sparse.at("linear");
      for (uint32_t i = 0; i < spec.num_indices; ++i)
        EXPECT_EQ(RedirectId(lin.row(i)[0]), i % kPerField <= 1 ? index->Find(i) : -1) << i;
    }
    (*net)->PullHotRows(mu);
  }
  const ExampleBlock data = CleanRows(400, kFields, kPerField, 11);
  for (size_t r = 0; r < data.rows(); ++r) {
    const BatchView v{data.labels.data() + r, data.weights.data() + r, data.offsets.data() + r,
                      data.features.data(), 1};
    const auto next = r + 1 < data.rows() ? data.row(r + 1) : std::span<const Feature>();
    (*net)->TrainStep(v, RunContext{true, r}, c, r + 1, next);
    if (hot && r % 60 == 59) (*net)->MergeHotRows(mu, false);
  }
  if (hot) {
    // Rows 360-399 are in the copies only: the last merge must change the
    // tables (else the copies were never trained on).
    if (redirects) redirects->Restore();
    const FloatVec linear = store.sparse.at("linear").data;
    if (redirects) EXPECT_TRUE(redirects->Install());
    (*net)->MergeHotRows(mu, true);
    if (redirects) redirects->Restore();
    EXPECT_NE(std::memcmp(linear.data(), store.sparse.at("linear").data.data(), linear.size() * sizeof(float)), 0);
  }
  EXPECT_EQ((*net)->fused_steps(), data.rows());
  return store;
}

void ExpectSameBytes(const ParamStore& a, const ParamStore& b) {
  for (const auto& [name, t] : a.sparse) {
    const SparseTable& u = b.sparse.at(name);
    ASSERT_EQ(t.data.size(), u.data.size());
    EXPECT_EQ(std::memcmp(t.data.data(), u.data.data(), t.data.size() * sizeof(float)), 0) << name;
  }
  for (const auto& [name, p] : a.dense) {
    const DenseParam& q = b.dense.at(name);
    EXPECT_EQ(p.w, q.w) << name;
    EXPECT_EQ(p.s1, q.s1) << name;
  }
}

TEST(HotRows, OneThreadOnCopiesWritesTheSameBytes) {
  for (auto [type, k] : {std::pair{ModelType::kFfm, 4u}, std::pair{ModelType::kLr, 1u}, std::pair{ModelType::kFm, 8u},
                         std::pair{ModelType::kFm, 4u}}) {
    for (OptimizerType opt : {OptimizerType::kAdaGrad, OptimizerType::kSgd}) {
      if (type == ModelType::kFfm && opt == OptimizerType::kSgd) continue;  // no fused FFM kernel for SGD
      SCOPED_TRACE(std::string(Name(type)) + " k=" + std::to_string(k) + " " + std::string(Name(opt)));
      const ParamStore shared = TrainOne(type, k, opt, false), copies = TrainOne(type, k, opt, true);
      ExpectSameBytes(shared, copies);
    }
  }
}

// lr's and fm's kernel finds the copies through the linear table's
// redirects: the same bytes again.
TEST(HotRows, CopiesFoundThroughRedirectsWriteTheSameBytes) {
  for (auto [type, k] : {std::pair{ModelType::kLr, 1u}, std::pair{ModelType::kFm, 8u}, std::pair{ModelType::kFm, 4u},
                         std::pair{ModelType::kFm, 3u}})
    for (OptimizerType opt : {OptimizerType::kAdaGrad, OptimizerType::kSgd, OptimizerType::kFtrl}) {
      SCOPED_TRACE(std::string(Name(type)) + " k=" + std::to_string(k) + " " + std::string(Name(opt)));
      const ParamStore shared = TrainOne(type, k, opt, false);
      const ParamStore redirected = TrainOne(type, k, opt, true, true);
      ExpectSameBytes(shared, redirected);
    }
}

// No float arithmetic yields a redirect (x86 quiets every NaN it makes);
// every id round-trips; Restore puts back the table's bytes.
TEST(RedirectedRows, RedirectsAreNoComputedValueAndRestoreExactly) {
  volatile float zero = 0.0f, inf = std::numeric_limits<float>::infinity(), minus = -1.0f;
  for (float v : {zero / zero, inf - inf, std::sqrt(minus), zero * inf, std::numeric_limits<float>::quiet_NaN(), 0.0f,
                  -0.0f, 1.0f, -3.5e38f, inf, -inf, std::numeric_limits<float>::denorm_min()})
    EXPECT_EQ(RedirectId(v), -1) << v;
  const float snan = std::numeric_limits<float>::signaling_NaN();
  EXPECT_EQ(RedirectId(snan + 1.0f), -1);  // arithmetic on a signalling NaN gives a quiet one
  for (int32_t id : {0, 1, 584, 131071, (1 << kRedirectIdBits) - 1}) EXPECT_EQ(RedirectId(RedirectTo(id)), id);

  SparseTable t = MakeTable(10, 1, 1, 1);
  const FloatVec before = t.data;
  auto hot = HotIndex::Build(std::vector<uint32_t>{0, 0, 5, 0, 0, 0, 0, 9, 0, 0, 0, 0, 7}, 5, 10);
  RedirectedRows r(&t, hot);
  ASSERT_TRUE(r.Install());
  EXPECT_FALSE(r.Install());  // once
  EXPECT_EQ(RedirectId(t.row(7)[0]), hot->Find(7));
  EXPECT_EQ(RedirectId(t.row(2)[0]), hot->Find(2));
  EXPECT_EQ(r.row(hot->Find(7))[0], before[7 * t.row_stride()]);  // the shared value moved aside
  // Copies pull from and merge into the moved values while installed.
  TableReplica a(&t, hot);
  a.set_redirect(&r);
  a.Pull();
  EXPECT_EQ(a.Row(7)[1], before[7 * t.row_stride() + 1]);
  a.Row(7)[1] += 2.0f;
  a.Merge();
  EXPECT_EQ(r.row(hot->Find(7))[1], before[7 * t.row_stride() + 1] + 2.0f);
  r.Restore();
  EXPECT_FALSE(r.installed());
  t.row(7)[1] -= 2.0f;
  EXPECT_EQ(std::memcmp(t.data.data(), before.data(), before.size() * sizeof(float)), 0);
}

TEST(HotRows, DeepModelsHaveNoCopies) {
  ModelSpec spec;
  spec.type = ModelType::kNffm;
  spec.k = 4;
  spec.hidden = {8};
  spec.num_fields = 3;
  spec.num_indices = 9;
  ParamStore store;
  auto net = Network::Build(spec, &store, false, 7);
  ASSERT_TRUE(net.ok());
  EXPECT_FALSE((*net)->UseHotRows(HotIndex::Build(std::vector<uint32_t>(9, 10), 1, 9)));
}

// Redirects only where the one-row kernel takes every step (the graph would
// read a redirect as a weight): not fm with mean pooling, not ffm, not with
// the fused kernels off.
TEST(HotRows, RedirectsOnlyWhereTheKernelTakesEveryStep) {
  auto hot = HotIndex::Build(std::vector<uint32_t>(9, 10), 1, 9);
  auto redirects = [&](ModelType type, bool mean, bool fused) {
    ModelSpec spec;
    spec.type = type;
    spec.k = 4;
    spec.num_fields = 3;
    spec.num_indices = 9;
    spec.mean_pooling = mean;
    ParamStore store;
    store.state = 1;
    auto net = Network::Build(spec, &store, false, 7);
    EXPECT_TRUE(net.ok());
    (*net)->set_fused(fused);
    EXPECT_TRUE((*net)->UseHotRows(hot));
    RedirectedRows r(&store.sparse.at("linear"), hot);
    return (*net)->RedirectHotRows(&r);
  };
  EXPECT_TRUE(redirects(ModelType::kLr, false, true));
  EXPECT_TRUE(redirects(ModelType::kFm, false, true));
  EXPECT_FALSE(redirects(ModelType::kFm, true, true));
  EXPECT_FALSE(redirects(ModelType::kFfm, false, true));
  EXPECT_FALSE(redirects(ModelType::kLr, false, false));
}

}  // namespace
}  // namespace fieldfm
