// STREAM-like copy and triad: the machine's memory bandwidth, the floor the
// FFM/NFFM training loops are compared against in bench/RESULTS.md.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstring>
#include <vector>

#include "bench_size.h"

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

}  // namespace
