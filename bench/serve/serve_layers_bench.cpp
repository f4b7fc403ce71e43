// In-process cost of each layer of a /v1/predict request, so the HTTP figures
// of bench/serve/run.sh can be read against them:
//   FIELDFM_SERVE_MODEL=/tmp/nffm.bin build/release/fieldfm_bench --benchmark_filter=Serve
// Model benchmarks need FIELDFM_SERVE_MODEL (a model file from `fieldfm train`
// reading libffm tokens); without it they report an error and do nothing.
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <simdjson.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "fieldfm/predictor.h"
#include "serve/instance_key.h"
#include "serve/prediction_cache.h"

namespace fieldfm {
namespace {

constexpr int kFields = 39;

// One instance as the wrk scripts send it: 39 one-hot libffm tokens.
std::string RandomTokens(std::mt19937& rng, uint32_t index_space) {
  std::string s;
  for (int f = 0; f < kFields; ++f) {
    if (f) s += ' ';
    fmt::format_to(std::back_inserter(s), "{}:{}:1", f, rng() % index_space);
  }
  return s;
}

std::string Body(int instances, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::string body = "{\"instances\":[";
  for (int i = 0; i < instances; ++i) {
    if (i) body += ',';
    body += '"' + RandomTokens(rng, 100000) + '"';
  }
  return body + "]}";
}

const Predictor* Model() {
  static std::shared_ptr<const Predictor> model = [] {
    const char* path = std::getenv("FIELDFM_SERVE_MODEL");
    if (!path) return std::shared_ptr<const Predictor>();
    auto loaded = LoadPredictor(path);
    if (!loaded.ok()) {
      std::fprintf(stderr, "cannot load %s: %s\n", path, loaded.status().message().c_str());
      return std::shared_ptr<const Predictor>();
    }
    return std::move(loaded).value();
  }();
  return model.get();
}

void BM_ServeJsonParse(benchmark::State& state) {
  const std::string body = Body(int(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(nlohmann::json::parse(body));
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(body.size()));
}
BENCHMARK(BM_ServeJsonParse)->Arg(1)->Arg(100);

// The server's fast path: simdjson DOM, walking the instances as strings.
void BM_ServeSimdjsonParse(benchmark::State& state) {
  const simdjson::padded_string body(Body(int(state.range(0))));
  simdjson::dom::parser parser;
  for (auto _ : state) {
    simdjson::dom::array instances;
    if (parser.parse(body)["instances"].get_array().get(instances)) return state.SkipWithError("parse failed");
    size_t bytes = 0;
    for (simdjson::dom::element e : instances) bytes += std::string_view(e.get_string().value_unsafe()).size();
    benchmark::DoNotOptimize(bytes);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(body.size()));
}
BENCHMARK(BM_ServeSimdjsonParse)->Arg(1)->Arg(100);

void BM_ServeEncodeTokens(benchmark::State& state) {
  const Predictor* model = Model();
  if (!model) return state.SkipWithError("set FIELDFM_SERVE_MODEL");
  std::mt19937 rng(1);
  const std::string tokens = RandomTokens(rng, 100000);
  std::vector<Feature> features;
  for (auto _ : state) {
    features.clear();
    benchmark::DoNotOptimize(model->pipeline().EncodeTokens(tokens, &features));
  }
}
BENCHMARK(BM_ServeEncodeTokens);

void BM_ServeCanonicalHash(benchmark::State& state) {
  std::vector<Feature> features, scratch;
  std::mt19937 rng(1);
  for (uint32_t f = 0; f < kFields; ++f) features.push_back({f, uint32_t(rng() % 100000), 1.0f});
  std::shuffle(features.begin(), features.end(), rng);
  for (auto _ : state) benchmark::DoNotOptimize(serve::CanonicalInstanceHash(features, &scratch));
}
BENCHMARK(BM_ServeCanonicalHash);

void BM_ServeCacheLookupHit(benchmark::State& state) {
  serve::PredictionCache cache(100000, std::chrono::milliseconds(60000), nullptr);
  for (uint64_t k = 0; k < 100000; ++k) cache.Insert(k * 0x9e3779b97f4a7c15ULL, 7, 0.5f);
  uint64_t k = 0;
  float p = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(cache.Lookup((k++ % 100000) * 0x9e3779b97f4a7c15ULL, 7, &p));
  }
}
BENCHMARK(BM_ServeCacheLookupHit)->Threads(1)->Threads(2);

void BM_ServeJsonWrite(benchmark::State& state) {
  const int n = int(state.range(0));
  std::vector<float> predictions(n);
  for (int i = 0; i < n; ++i) predictions[i] = 0.1234567f + 1e-4f * float(i);
  std::string out;
  for (auto _ : state) {
    out.clear();
    out += "{\"predictions\":[";
    for (int i = 0; i < n; ++i) {
      if (i) out += ',';
      fmt::format_to(std::back_inserter(out), "{}", predictions[i]);
    }
    fmt::format_to(std::back_inserter(out), "],\"model_version\":\"{}\",\"ignored_fields\":{}}}", "0123abcd", 0);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_ServeJsonWrite)->Arg(1)->Arg(100);

// The model's forward pass on `rows` encoded instances (what one batched call costs).
void BM_ServePredict(benchmark::State& state) {
  const Predictor* model = Model();
  if (!model) return state.SkipWithError("set FIELDFM_SERVE_MODEL");
  const int rows = int(state.range(0));
  std::mt19937 rng(2);
  ExampleBlock block;
  std::vector<Feature> features;
  for (int r = 0; r < rows; ++r) {
    features.clear();
    if (!model->pipeline().EncodeTokens(RandomTokens(rng, 100000), &features).ok()) {
      return state.SkipWithError("model does not read libffm tokens");
    }
    block.add(0.0f, 1.0f, features);
  }
  std::vector<float> out(rows);
  for (auto _ : state) {
    model->Predict(block.view(), out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * rows);
}
BENCHMARK(BM_ServePredict)->Arg(1)->Arg(8)->Arg(32)->Arg(100)->UseRealTime();

}  // namespace
}  // namespace fieldfm
