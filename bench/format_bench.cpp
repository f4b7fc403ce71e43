// Prediction text ("%.7g\n" per value): FormatG7 against std::to_chars and fmt,
// on sigmoid outputs of a spread of scores (what `fieldfm predict` writes).
//   build/release/fieldfm_bench --benchmark_filter=Format --benchmark_repetitions=5
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <random>
#include <vector>

#include "bench_size.h"
#include "util/float_text.h"

namespace {

const std::vector<float>& Probabilities() {
  static const std::vector<float> v = [] {
    std::mt19937 rng(3);
    std::normal_distribution<float> score(-1.5f, 1.5f);
    std::vector<float> out(fieldfm::bench::Size(1 << 20));
    for (float& p : out) p = 1.0f / (1.0f + std::exp(-score(rng)));
    return out;
  }();
  return v;
}

template <typename Format>
void Run(benchmark::State& state, Format format) {
  const std::vector<float>& v = Probabilities();
  std::vector<char> buf(v.size() * 16);
  for (auto _ : state) {
    char* p = buf.data();
    for (float x : v) {
      p = format(x, p);
      *p++ = '\n';
    }
    benchmark::DoNotOptimize(p);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(v.size()));
}

void BM_FormatG7(benchmark::State& state) { Run(state, [](float x, char* p) { return fieldfm::FormatG7(x, p); }); }
void BM_FormatToChars(benchmark::State& state) {
  Run(state, [](float x, char* p) { return std::to_chars(p, p + 16, x, std::chars_format::general, 7).ptr; });
}
void BM_FormatFmt(benchmark::State& state) {
  Run(state, [](float x, char* p) { return fmt::format_to(p, "{:.7g}", x); });
}

BENCHMARK(BM_FormatG7);
BENCHMARK(BM_FormatToChars);
BENCHMARK(BM_FormatFmt);

}  // namespace
