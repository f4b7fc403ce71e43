// Forward + backward per block, and training throughput per model, on a
// 39-field, one-feature-per-field in-memory data set (13 small "numeric"
// fields, 26 categorical with Zipf-like frequencies), k = 4.
//
//   build/release/fieldfm_bench --benchmark_filter='BM_Train'      rows/s per model, 1 and 2 threads
//   build/release/fieldfm_bench --benchmark_filter='BM_Block'      per block
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>

#include "bench_size.h"
#include "fieldfm/train.h"
#include "model/blocks.h"
#include "model/network.h"
#include "train/memory_source.h"

namespace fieldfm {
namespace {

constexpr uint32_t kFields = 39;

// Field f has 8..50000 values; ids are global. Frequencies ~ Zipf(1.1).
ExampleBlock MakeData(size_t rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<uint32_t> base(kFields + 1, 0);
  for (uint32_t f = 0; f < kFields; ++f) base[f + 1] = base[f] + (f < 13 ? 32 : uint32_t(8 + (f * 7919) % 50000));
  ExampleBlock b;
  std::vector<Feature> feats(kFields);
  for (size_t r = 0; r < rows; ++r) {
    double logit = -1.2;
    for (uint32_t f = 0; f < kFields; ++f) {
      const uint32_t card = base[f + 1] - base[f];
      const uint32_t v = std::min(card - 1, uint32_t(std::pow(double(card), u(rng)) - 1));
      feats[f] = Feature{f, base[f] + v, 1.0f};
      logit += ((base[f] + v) % 7 == 0) ? 0.3 : -0.05;
    }
    b.add(u(rng) < 1 / (1 + std::exp(-logit)) ? 1.0f : 0.0f, 1.0f, feats);
  }
  return b;
}

const ExampleBlock& Data() {
  static const ExampleBlock data = MakeData(bench::Size(200000, 1024), 1);  // block fixtures take 256 rows
  return data;
}

void BM_Train(benchmark::State& state, ModelType type) {
  TrainOptions o;
  o.model.type = type;
  o.model.k = 4;
  o.model.hidden = {100};
  o.threads = int(state.range(0));
  o.epochs = 1;
  if (o.model.is_deep()) {
    o.optimizer = OptimizerType::kAdam;
    o.batch_size = 256;
  }
  MemorySource src(Data());
  double epoch_seconds = 0;
  TrainCallbacks cb;
  cb.on_epoch = [&](const EpochReport& r) { epoch_seconds += r.seconds; };
  for (auto _ : state) {
    auto model = Train(o, src, nullptr, "{}", cb);
    benchmark::DoNotOptimize(model.ok());
  }
  // The epoch alone (as `fieldfm train` reports it); Time also counts the
  // counting pass, parameter initialisation and the final copy.
  state.counters["epoch_rows/s"] = double(Data().rows()) * double(state.iterations()) / epoch_seconds;
}
BENCHMARK_CAPTURE(BM_Train, lr, ModelType::kLr)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Train, fm, ModelType::kFm)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Train, ffm, ModelType::kFfm)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Train, deepfm, ModelType::kDeepFm)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Train, nfm, ModelType::kNfm)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Train, deepffm, ModelType::kDeepFfm)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Train, nffm, ModelType::kNffm)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- single blocks: forward + backward on a batch -----------------------------

struct BlockFixture {
  ParamStore store;
  ExampleBlock batch;
  std::unique_ptr<Block> block;
  std::vector<Mat> inputs;
};

void RunBlock(benchmark::State& state, BlockFixture& fx) {
  std::vector<const Mat*> in;
  std::vector<Mat> din(fx.inputs.size());
  std::vector<Mat*> dinp;
  for (size_t i = 0; i < fx.inputs.size(); ++i) {
    in.push_back(&fx.inputs[i]);
    din[i] = Mat::Zero(fx.inputs[i].rows(), fx.inputs[i].cols());
    dinp.push_back(&din[i]);
  }
  Mat out, dout;
  const RunContext ctx{true, 1};
  for (auto _ : state) {
    fx.block->ZeroGrad();
    fx.block->Forward(fx.batch.view(), in, &out, ctx);
    dout.setConstant(out.rows(), out.cols(), 0.01f);
    fx.block->Backward(fx.batch.view(), in, out, dout, dinp, ctx);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["rows/s"] =
      benchmark::Counter(double(fx.batch.rows()) * double(state.iterations()), benchmark::Counter::kIsRate);
}

BlockFixture SparseFixture(size_t rows, uint32_t slots, uint32_t k) {
  BlockFixture fx;
  const ExampleBlock& d = Data();
  for (size_t r = 0; r < rows; ++r) fx.batch.add(d.labels[r], 1.0f, d.row(r));
  fx.store.num_fields = kFields;
  fx.store.num_indices = 400000;
  SparseTable& t = fx.store.sparse["t"];
  t.rows = fx.store.num_indices;
  t.slots = slots;
  t.k = k;
  t.state = 1;
  t.data.assign(t.rows * t.row_stride(), 0.01f);
  return fx;
}

void BM_BlockLinear(benchmark::State& state) {
  auto fx = SparseFixture(256, 1, 1);
  fx.block = MakeLinear(&fx.store, &fx.store.sparse["t"]);
  RunBlock(state, fx);
}
BENCHMARK(BM_BlockLinear);

void BM_BlockEmbedding(benchmark::State& state) {
  auto fx = SparseFixture(256, 1, 4);
  fx.block = MakeEmbeddingPool(&fx.store, &fx.store.sparse["t"], false);
  RunBlock(state, fx);
}
BENCHMARK(BM_BlockEmbedding);

void BM_BlockFieldAwareEmbedding(benchmark::State& state) {
  auto fx = SparseFixture(256, kFields, 4);
  fx.block = MakeFieldAwareEmbedding(&fx.store, &fx.store.sparse["t"], false);
  RunBlock(state, fx);
}
BENCHMARK(BM_BlockFieldAwareEmbedding);

BlockFixture DenseFixture(std::unique_ptr<Block> block, std::vector<int> dims, int rows = 256) {
  BlockFixture fx;
  fx.batch.labels.resize(rows);
  fx.batch.offsets.assign(rows + 1, 0);
  fx.batch.weights.resize(rows, 1.0f);
  fx.block = std::move(block);
  for (int d : dims) fx.inputs.push_back(Mat::Constant(rows, d, 0.1f));
  return fx;
}

void BM_BlockFm(benchmark::State& state) {
  auto fx = DenseFixture(MakeFmSecondOrder(kFields, 4), {int(kFields * 4)});
  RunBlock(state, fx);
}
BENCHMARK(BM_BlockFm);

void BM_BlockFfm(benchmark::State& state) {
  auto fx = DenseFixture(MakeFfmSecondOrder(kFields, 4), {int(kFields * kFields * 4)});
  RunBlock(state, fx);
}
BENCHMARK(BM_BlockFfm);

void BM_BlockBiInteraction(benchmark::State& state) {
  auto fx = DenseFixture(MakeBiInteraction(kFields, 4), {int(kFields * 4)});
  RunBlock(state, fx);
}
BENCHMARK(BM_BlockBiInteraction);

void BM_BlockFieldPairs(benchmark::State& state) {
  auto fx = DenseFixture(MakeFieldPairProducts(kFields, 4, state.range(0)), {int(kFields * kFields * 4)});
  RunBlock(state, fx);
}
BENCHMARK(BM_BlockFieldPairs)->Arg(0)->Arg(1);

void BM_BlockDense(benchmark::State& state) {
  static DenseParam w, b;
  const int in = int(state.range(0)), out = 100;
  w.w.assign(size_t(in) * out, 0.01f);
  b.w.assign(out, 0.0f);
  auto fx = DenseFixture(MakeDense(&w, &b, in, out, "d"), {in});
  RunBlock(state, fx);
}
BENCHMARK(BM_BlockDense)->Arg(156)->Arg(2964);  // deepfm input, nffm input (741 pairs x 4)

void BM_BlockActivationDropoutBatchNorm(benchmark::State& state) {
  static DenseParam g, be, rm, rv;
  g.w.assign(100, 1.0f);
  be.w.assign(100, 0.0f);
  rm.w.assign(100, 0.0f);
  rv.w.assign(100, 1.0f);
  std::unique_ptr<Block> blocks[] = {MakeActivation(Activation::kRelu, 100), MakeDropout(0.2f, 100, 1),
                                     MakeBatchNorm(&g, &be, &rm, &rv, 100, "bn")};
  auto fx = DenseFixture(std::move(blocks[state.range(0)]), {100});
  RunBlock(state, fx);
}
BENCHMARK(BM_BlockActivationDropoutBatchNorm)->Arg(0)->Arg(1)->Arg(2);

}  // namespace
}  // namespace fieldfm
