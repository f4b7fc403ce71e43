// The prediction cache and its keys, without HTTP.
#include <gtest/gtest.h>

#include "serve/fake_model.h"
#include "serve/instance_key.h"
#include "serve/prediction_cache.h"

namespace fieldfm::serve {
namespace {

using std::chrono::milliseconds;
using testing::ManualClock;

TEST(PredictionCache, MissThenHit) {
  ManualClock clock;
  PredictionCache cache(100, milliseconds(1000), clock.Fn());
  float v = 0;
  EXPECT_FALSE(cache.Lookup(42, 7, &v));
  cache.Insert(42, 7, 0.25f);
  ASSERT_TRUE(cache.Lookup(42, 7, &v));
  EXPECT_EQ(v, 0.25f);
  const CacheStats s = cache.stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.entries, 1u);
}

TEST(PredictionCache, OtherModelTagIsNeverServed) {
  ManualClock clock;
  PredictionCache cache(100, milliseconds(1000), clock.Fn());
  cache.Insert(42, 7, 0.25f);
  float v = 0;
  EXPECT_FALSE(cache.Lookup(42, 8, &v));
  EXPECT_FALSE(cache.Lookup(42, 7, &v)) << "the stale entry is dropped on sight";
}

TEST(PredictionCache, EntryExpiresTtlAfterInsertion) {
  ManualClock clock;
  PredictionCache cache(100, milliseconds(1000), clock.Fn());
  cache.Insert(1, 7, 0.5f);
  float v = 0;
  clock.Advance(milliseconds(999));
  EXPECT_TRUE(cache.Lookup(1, 7, &v));
  clock.Advance(milliseconds(1));
  EXPECT_FALSE(cache.Lookup(1, 7, &v));
  EXPECT_EQ(cache.stats().expirations, 1u);
  EXPECT_EQ(cache.stats().entries, 0u);
  // Reading does not extend the lifetime; inserting again does.
  cache.Insert(1, 7, 0.5f);
  clock.Advance(milliseconds(600));
  EXPECT_TRUE(cache.Lookup(1, 7, &v));
  clock.Advance(milliseconds(600));
  EXPECT_FALSE(cache.Lookup(1, 7, &v));
}

TEST(PredictionCache, ZeroTtlNeverExpires) {
  ManualClock clock;
  PredictionCache cache(10, milliseconds(0), clock.Fn());
  cache.Insert(1, 7, 0.5f);
  clock.Advance(milliseconds(1000LL * 3600 * 24 * 365));
  float v = 0;
  EXPECT_TRUE(cache.Lookup(1, 7, &v));
}

TEST(PredictionCache, EvictsLeastRecentlyUsed) {
  ManualClock clock;
  PredictionCache cache(2, milliseconds(0), clock.Fn(), /*shards=*/1);
  cache.Insert(1, 7, 0.1f);
  cache.Insert(2, 7, 0.2f);
  float v = 0;
  ASSERT_TRUE(cache.Lookup(1, 7, &v));  // 1 is now the most recently used
  cache.Insert(3, 7, 0.3f);             // evicts 2
  EXPECT_TRUE(cache.Lookup(1, 7, &v));
  EXPECT_FALSE(cache.Lookup(2, 7, &v));
  EXPECT_TRUE(cache.Lookup(3, 7, &v));
  EXPECT_EQ(v, 0.3f);
  EXPECT_EQ(cache.stats().evictions, 1u);
  EXPECT_EQ(cache.stats().entries, 2u);
}

TEST(PredictionCache, UpdatingAKeyDoesNotEvict) {
  PredictionCache cache(2, milliseconds(0), nullptr, 1);
  cache.Insert(1, 7, 0.1f);
  cache.Insert(2, 7, 0.2f);
  cache.Insert(1, 7, 0.9f);
  float v = 0;
  ASSERT_TRUE(cache.Lookup(1, 7, &v));
  EXPECT_EQ(v, 0.9f);
  EXPECT_TRUE(cache.Lookup(2, 7, &v));
  EXPECT_EQ(cache.stats().evictions, 0u);
}

TEST(PredictionCache, ShardedCacheStaysWithinItsBound) {
  PredictionCache cache(100, milliseconds(0), nullptr, 16);
  for (uint64_t k = 0; k < 5000; ++k) cache.Insert(testing::FakePredictor::Mix(k), 1, float(k));
  const CacheStats s = cache.stats();
  EXPECT_LE(s.entries, 100u);
  EXPECT_GE(s.entries, 50u);
  EXPECT_EQ(s.evictions, 5000u - s.entries);
}

TEST(PredictionCache, ZeroCapacityDisablesIt) {
  PredictionCache cache(0, milliseconds(1000), nullptr);
  EXPECT_FALSE(cache.enabled());
  cache.Insert(1, 7, 0.5f);
  float v = 0;
  EXPECT_FALSE(cache.Lookup(1, 7, &v));
  EXPECT_EQ(cache.stats().entries, 0u);
}

TEST(PredictionCache, ClearDropsEverything) {
  PredictionCache cache(10, milliseconds(0), nullptr);
  for (uint64_t k = 0; k < 5; ++k) cache.Insert(k << 40, 1, 0.5f);
  cache.Clear();
  EXPECT_EQ(cache.stats().entries, 0u);
  cache.Insert(1, 1, 0.5f);  // still usable
  float v = 0;
  EXPECT_TRUE(cache.Lookup(1, 1, &v));
}

TEST(InstanceKey, CanonicalFormIgnoresFeatureOrder) {
  std::vector<Feature> scratch;
  const std::vector<Feature> a = {{2, 9, 1.0f}, {0, 5, 1.0f}, {1, 3, 0.5f}};
  const std::vector<Feature> b = {{1, 3, 0.5f}, {2, 9, 1.0f}, {0, 5, 1.0f}};
  EXPECT_EQ(CanonicalInstanceHash(a, &scratch), CanonicalInstanceHash(b, &scratch));
}

TEST(InstanceKey, ValuesFieldsAndIndicesAllCount) {
  std::vector<Feature> scratch;
  const uint64_t base = CanonicalInstanceHash(std::vector<Feature>{{0, 5, 1.0f}, {1, 3, 1.0f}}, &scratch);
  EXPECT_NE(base, CanonicalInstanceHash(std::vector<Feature>{{0, 5, 1.0f}, {1, 3, 2.0f}}, &scratch));
  EXPECT_NE(base, CanonicalInstanceHash(std::vector<Feature>{{0, 5, 1.0f}, {2, 3, 1.0f}}, &scratch));
  EXPECT_NE(base, CanonicalInstanceHash(std::vector<Feature>{{0, 5, 1.0f}, {1, 4, 1.0f}}, &scratch));
  EXPECT_NE(base, CanonicalInstanceHash(std::vector<Feature>{{0, 5, 1.0f}}, &scratch));
}

TEST(InstanceKey, ModelVersionChangesTheKey) {
  EXPECT_NE(ModelTag("v1"), ModelTag("v2"));
  EXPECT_NE(CacheKey(123, ModelTag("v1")), CacheKey(123, ModelTag("v2")));
  EXPECT_EQ(CacheKey(123, ModelTag("v1")), CacheKey(123, ModelTag("v1")));
}

}  // namespace
}  // namespace fieldfm::serve

namespace fieldfm {
namespace {

TEST(ServeOptions, ParseDuration) {
  EXPECT_EQ(ParseDuration("250ms").value().count(), 250);
  EXPECT_EQ(ParseDuration("2s").value().count(), 2000);
  EXPECT_EQ(ParseDuration("1.5s").value().count(), 1500);
  EXPECT_EQ(ParseDuration("1m").value().count(), 60000);
  EXPECT_EQ(ParseDuration("60").value().count(), 60000);
  EXPECT_EQ(ParseDuration("0").value().count(), 0);
  for (const char* bad : {"", "s", "-1s", "2 s", "3days", "abc"}) {
    auto r = ParseDuration(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("token"), std::string::npos);
  }
}

TEST(ServeOptions, LoopbackHosts) {
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("127.1.2.3"));
  EXPECT_TRUE(IsLoopbackHost("localhost"));
  EXPECT_TRUE(IsLoopbackHost("::1"));
  EXPECT_FALSE(IsLoopbackHost("0.0.0.0"));
  EXPECT_FALSE(IsLoopbackHost("10.0.0.1"));
  EXPECT_FALSE(IsLoopbackHost("::"));
}

}  // namespace
}  // namespace fieldfm
