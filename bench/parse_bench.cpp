// Text parsing throughput (MB/s of uncompressed input) for the data readers.
//   build/release/fieldfm_bench --benchmark_filter=Parse --benchmark_repetitions=5
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "bench_size.h"
#include "fieldfm/data.h"

namespace {

// Owns a temp file and removes it at exit. (An atexit callback reading the
// function-local static path ran after that string was destroyed, so the
// files leaked.)
struct TempFile {
  std::string path;
  explicit TempFile(std::string p) : path(std::move(p)) {}
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
};

std::string TempPath(const char* ext) {
  return (std::filesystem::temp_directory_path() /
          ("fieldfm_parse_bench_" + std::to_string(::getpid()) + ext)).string();
}

// A temp file of libffm lines shaped like Criteo after bucketing: 39 fields,
// 6-7 digit feature ids, mostly value 1, some normalized values.
const std::string& LibffmFile() {
  static const TempFile file([] {
    std::string p = TempPath(".ffm");
    std::mt19937_64 rng(42);
    std::string buf;
    std::ofstream out(p, std::ios::binary);
    for (size_t r = 0; r < fieldfm::bench::Size(200000); ++r) {
      buf += (rng() % 4 == 0) ? '1' : '0';
      for (int f = 0; f < 39; ++f) {
        buf += ' ';
        buf += std::to_string(f);
        buf += ':';
        buf += std::to_string(rng() % 2000000);
        buf += f < 13 && rng() % 2 ? ":0.3651" : ":1";
      }
      buf += '\n';
    }
    out << buf;
    return p;
  }());
  return file.path;
}

const std::string& CriteoTsvFile() {
  static const TempFile file([] {
    std::string p = TempPath(".tsv");
    std::mt19937_64 rng(7);
    std::string buf;
    char hex[16];
    for (size_t r = 0; r < fieldfm::bench::Size(100000); ++r) {
      buf += (rng() % 4 == 0) ? '1' : '0';
      for (int i = 0; i < 13; ++i) {
        buf += '\t';
        if (rng() % 5) buf += std::to_string(rng() % 3000);
      }
      for (int i = 0; i < 26; ++i) {
        buf += '\t';
        std::snprintf(hex, sizeof(hex), "%08x", static_cast<unsigned>(rng() % 100000));
        if (rng() % 10) buf += hex;
      }
      buf += '\n';
    }
    std::ofstream(p, std::ios::binary) << buf;
    return p;
  }());
  return file.path;
}

void ReadFile(benchmark::State& state, const fieldfm::FeaturePipeline& pipeline, const std::string& path) {
  fieldfm::ReadOptions read;
  read.threads = static_cast<int>(state.range(0));
  fieldfm::ExampleBlock block;
  uint64_t bytes = 0, rows = 0;
  for (auto _ : state) {
    auto src = pipeline.Open(path, read);
    if (!src.ok()) {
      state.SkipWithError(src.status().message().c_str());
      return;
    }
    for (;;) {
      auto n = (*src)->Next(&block, 4096);
      if (!n.ok()) {
        state.SkipWithError(n.status().message().c_str());
        return;
      }
      if (*n == 0) break;
      benchmark::DoNotOptimize(block.features.data());
    }
    bytes += (*src)->stats().bytes;
    rows += (*src)->stats().rows;
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["rows/s"] = benchmark::Counter(static_cast<double>(rows), benchmark::Counter::kIsRate);
}

void BM_ParseLibffm(benchmark::State& state) {
  fieldfm::PipelineOptions o;
  o.format = fieldfm::InputFormat::kLibffm;
  auto p = fieldfm::FeaturePipeline::Create(o);
  ReadFile(state, *p, LibffmFile());
}
BENCHMARK(BM_ParseLibffm)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ParseCriteoTsv(benchmark::State& state) {
  fieldfm::PipelineOptions o;
  o.preset = "criteo";
  auto p = fieldfm::FeaturePipeline::Create(o);
  ReadFile(state, *p, CriteoTsvFile());
}
BENCHMARK(BM_ParseCriteoTsv)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
