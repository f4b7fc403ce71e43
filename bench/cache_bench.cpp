// Reading speed of the binary example cache: ~2M rows x 39 features (~0.95 GB).
//   build/release/fieldfm_bench --benchmark_filter=Cache --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true   (one command line)
// The cache is built once per process in $TMPDIR (or /tmp) and removed at exit.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "bench_size.h"
#include "data/shuffle.h"
#include "fieldfm/cache.h"

namespace fieldfm {
namespace {

const size_t kRows = fieldfm::bench::Size(2'000'000);
constexpr uint32_t kFields = 39;

// Criteo-shaped rows generated on the fly (no text parsing in the way).
class RandomSource : public ExampleSource {
 public:
  Result<size_t> Next(ExampleBlock* out, size_t max_rows) override {
    out->clear();
    Feature feats[kFields];
    size_t n = std::min(max_rows, kRows - pos_);
    for (size_t i = 0; i < n; ++i, ++pos_) {
      for (uint32_t f = 0; f < kFields; ++f) feats[f] = Feature{f, static_cast<uint32_t>(rng_.Below(1u << 22)), 1.0f};
      out->add(static_cast<float>(rng_.Below(4) == 0), 1.0f, feats);
    }
    return n;
  }
  Status Rewind() override { return Status::InvalidArgument("not rewindable"); }
  const ReadStats& stats() const override { return stats_; }

 private:
  size_t pos_ = 0;
  Rng rng_{1};
  ReadStats stats_;
};

struct BenchCache {
  std::string path;
  BenchCache() {
    const char* tmp = std::getenv("TMPDIR");
    path = std::string(tmp ? tmp : "/tmp") + "/fieldfm_cache_bench_" + std::to_string(::getpid()) + ".cache";
    RandomSource src;
    Status st = BuildCache(src, CacheKey{}, path);
    if (!st.ok()) {
      std::fprintf(stderr, "cannot build bench cache: %s\n", st.ToString().c_str());
      std::exit(1);
    }
  }
  ~BenchCache() { std::filesystem::remove(path); }
};

const std::string& CachePath() {
  static BenchCache cache;
  return cache.path;
}

std::unique_ptr<CacheSource> MustOpen() {
  auto src = OpenCache(CachePath());
  if (!src.ok()) {
    std::fprintf(stderr, "%s\n", src.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(src).value();
}

// Reads the rest of the epoch through Next; returns the rows read.
size_t ReadEpoch(CacheSource* src, ExampleBlock* block) {
  size_t rows = 0;
  while (true) {
    auto got = src->Next(block, 4096);
    if (!got.ok() || *got == 0) break;
    rows += *got;
  }
  return rows;
}

// ExampleSource::Next in storage order: what a trainer gets through the generic interface.
void BM_CacheSequentialNext(benchmark::State& state) {
  auto src = MustOpen();
  ExampleBlock block;
  for (auto _ : state) {
    (void)src->Rewind();
    benchmark::DoNotOptimize(ReadEpoch(src.get(), &block));
  }
  state.SetBytesProcessed(state.iterations() * src->info().file_size);
  state.counters["rows/s"] = benchmark::Counter(double(state.iterations() * src->info().rows), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_CacheSequentialNext)->Unit(benchmark::kMillisecond)->UseRealTime();

// Zero-copy block views, touching every feature (a trainer's own loop).
void BM_CacheBlockViews(benchmark::State& state) {
  auto src = MustOpen();
  for (auto _ : state) {
    uint64_t sum = 0;
    for (size_t b = 0; b < src->num_blocks(); ++b) {
      auto v = src->block(b);
      if (!v.ok()) break;
      const Feature* f = v->features;
      const uint64_t n = v->offsets[v->rows];
      for (uint64_t i = 0; i < n; ++i) sum += f[i].index;
      for (size_t r = 0; r < v->rows; ++r) sum += static_cast<uint64_t>(v->labels[r]);
    }
    benchmark::DoNotOptimize(sum);
  }
  state.SetBytesProcessed(state.iterations() * src->info().file_size);
}
BENCHMARK(BM_CacheBlockViews)->Unit(benchmark::kMillisecond)->UseRealTime();

// A shuffled epoch (block order + rows within blocks) through Next.
void BM_CacheShuffledNext(benchmark::State& state) {
  auto src = MustOpen();
  ExampleBlock block;
  uint32_t epoch = 0;
  for (auto _ : state) {
    src->SetShuffle(42, epoch++);
    benchmark::DoNotOptimize(ReadEpoch(src.get(), &block));
  }
  state.SetBytesProcessed(state.iterations() * src->info().file_size);
}
BENCHMARK(BM_CacheShuffledNext)->Unit(benchmark::kMillisecond)->UseRealTime();

// First epoch of a freshly opened cache: includes mapping and per-block checksums.
void BM_CacheOpenAndFirstEpoch(benchmark::State& state) {
  uint64_t bytes = 0;
  ExampleBlock block;
  for (auto _ : state) {
    auto src = MustOpen();
    benchmark::DoNotOptimize(ReadEpoch(src.get(), &block));
    bytes += src->info().file_size;
  }
  state.SetBytesProcessed(bytes);
}
BENCHMARK(BM_CacheOpenAndFirstEpoch)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace fieldfm
