// STREAM-like copy and triad: the machine's memory bandwidth, the floor the
// FFM/NFFM training loops are compared against in bench/RESULTS.md. And the
// floor closer to FFM's access pattern: whole table rows read and written at
// random, as many per example as the benchmark data has cold features.
#include <benchmark/benchmark.h>

#include <bit>
#include <cstddef>
#include <cstring>
#include <vector>

#include "bench_size.h"
#include "model/params.h"

namespace {

// Arrays far larger than the last-level cache so every byte comes from DRAM.
size_t ArrayFloats(const benchmark::State& state) {
  return fieldfm::bench::Size(static_cast<size_t>(state.range(0)) << 20);
}

void BM_StreamCopy(benchmark::State& state) {
  const size_t n = ArrayFloats(state);
  std::vector<float> a(n, 1.0f), b(n, 0.0f);
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), n * sizeof(float));
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  // Read a + write b.
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 2 * n * sizeof(float));
}
BENCHMARK(BM_StreamCopy)->Arg(64)->Unit(benchmark::kMillisecond);

void BM_StreamTriad(benchmark::State& state) {
  const size_t n = ArrayFloats(state);
  std::vector<float> a(n, 0.0f), b(n, 1.0f), c(n, 2.0f);
  for (auto _ : state) {
    for (size_t i = 0; i < n; ++i) a[i] = b[i] + 3.0f * c[i];
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 3 * n * sizeof(float));
}
BENCHMARK(BM_StreamTriad)->Arg(64)->Unit(benchmark::kMillisecond);

// A 1 GiB table of range(0)-byte rows and 2^14 examples of 26 random rows each.
struct RandomRows {
  static constexpr size_t kPerExample = 26, kExamples = 1 << 14;
  size_t row_floats, rows;
  fieldfm::FloatVec table;
  std::vector<uint32_t> idx;
  explicit RandomRows(const benchmark::State& state)
      : row_floats(static_cast<size_t>(state.range(0)) / sizeof(float)),
        rows(fieldfm::bench::Size((size_t(1) << 30) / (row_floats * sizeof(float)))),
        table(rows * row_floats, 1.0f),
        idx(kExamples * kPerExample) {
    uint64_t x = 88172645463325252ull;
    for (auto& i : idx) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      i = uint32_t(x % rows);
    }
  }
  const uint32_t* example(size_t e) const { return &idx[(e % kExamples) * kPerExample]; }
  float* row(uint32_t i) { return &table[size_t(i) * row_floats]; }
  void Prefetch(size_t e) {
    const uint32_t* ex = example(e);
    for (size_t k = 0; k < kPerExample; ++k) {
      const char* p = reinterpret_cast<const char*>(row(ex[k]));
      for (size_t off = 0; off < row_floats * sizeof(float); off += 64) __builtin_prefetch(p + off, 0, 2);
    }
  }
};

// Each example reads and writes 26 random rows of range(0) bytes (FFM k = 4
// with AdaGrad: 38 slots x 32 B = 1216 B per feature; the 26 categorical
// features of the 39-field benchmark data), the next example's rows
// prefetched as the FFM kernel does. A 1 GiB table on 2 MiB pages, like the
// trainer's. Examples/s here bounds an FFM epoch that did no arithmetic.
// 780 B is the row FFM k = 4 would have with one AdaGrad accumulator per slot
// (39 slots x (16 B weights + 4 B)) instead of one per weight: the floor of
// that layout, for comparison (bench/RESULTS.md, session 12).
void BM_RandomRowUpdate(benchmark::State& state) {
  RandomRows t(state);
  const size_t row_floats = t.row_floats, kPerExample = RandomRows::kPerExample;
  size_t e = 0;
  for (auto _ : state) {
    const uint32_t* cur = t.example(e);
    t.Prefetch(e + 1);
    for (size_t k = 0; k < kPerExample; ++k) {
      float* r = t.row(cur[k]);
      for (size_t d = 0; d < row_floats; ++d) r[d] = r[d] * 0.999f + 0.001f;
    }
    benchmark::ClobberMemory();
    ++e;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 2 * kPerExample * row_floats * sizeof(float));
}
BENCHMARK(BM_RandomRowUpdate)->Arg(1216)->Arg(780)->Arg(608)->Unit(benchmark::kMicrosecond);

// The predict side of the same pattern: 26 random rows of range(0) bytes
// read (summed), not written; 608 B is FFM k = 4's weights-only row as a
// model file stores it. Examples/s here bounds an FFM predict that did no
// arithmetic.
void BM_RandomRowRead(benchmark::State& state) {
  RandomRows t(state);
  const size_t row_floats = t.row_floats, kPerExample = RandomRows::kPerExample;
  size_t e = 0;
  uint32_t sum = 0;  // integer sum of the bits: no float add chain to wait on
  for (auto _ : state) {
    const uint32_t* cur = t.example(e);
    t.Prefetch(e + 1);
    for (size_t k = 0; k < kPerExample; ++k) {
      const float* r = t.row(cur[k]);
      for (size_t d = 0; d < row_floats; ++d) sum += std::bit_cast<uint32_t>(r[d]);
    }
    benchmark::DoNotOptimize(sum);
    ++e;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kPerExample * row_floats * sizeof(float));
}
BENCHMARK(BM_RandomRowRead)->Arg(608)->Unit(benchmark::kMicrosecond);

}  // namespace
