// Why the dense layers call oneDNN's sgemm (model/gemm.h) rather than Eigen's
// product: the forward product of NFFM's first layer (B × 11,856 inputs times
// 11,856 × 100 weights, k = 16, 39 fields) at the batch sizes a server and
// the trainer use, and the two backward products of a 256-row batch.
//
//   build/release/fieldfm_bench --benchmark_filter='BM_Gemm'
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <random>
#include <vector>

#include "bench_size.h"
#include "model/gemm.h"

namespace fieldfm {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct Shapes {
  int rows, in, out;
  RowMat x, w, y;
  explicit Shapes(int rows_) : rows(rows_), in(int(bench::Size(11856, 64))), out(100) {
    x = RowMat::Random(rows, in);
    w = RowMat::Random(in, out);
    y = RowMat::Zero(rows, out);
  }
};

// Forward y = x·W. Arg: rows. Arg 1: which library (0 Eigen, 1 oneDNN).
void BM_GemmForward(benchmark::State& state) {
  Shapes s(int(state.range(0)));
  const bool dnnl = state.range(1) == 1;
  for (auto _ : state) {
    if (dnnl) {
      Sgemm(false, false, s.rows, s.out, s.in, 1.0f, s.x.data(), s.in, s.w.data(), s.out, 0.0f, s.y.data(), s.out);
    } else {
      s.y.noalias() = s.x * s.w;
    }
    benchmark::DoNotOptimize(s.y.data());
  }
  state.SetItemsProcessed(state.iterations() * s.rows);
  state.SetLabel(dnnl ? "onednn" : "eigen");
}
BENCHMARK(BM_GemmForward)->ArgsProduct({{1, 2, 8, 32, 256}, {0, 1}});

// Backward of a 256-row batch: dW += xᵀ·dy and dx = dy·Wᵀ.
void BM_GemmBackward(benchmark::State& state) {
  Shapes s(256);
  RowMat gw = RowMat::Zero(s.in, s.out), dx = RowMat::Zero(s.rows, s.in);
  const bool dnnl = state.range(0) == 1;
  for (auto _ : state) {
    if (dnnl) {
      Sgemm(true, false, s.in, s.out, s.rows, 1.0f, s.x.data(), s.in, s.y.data(), s.out, 1.0f, gw.data(), s.out);
      Sgemm(false, true, s.rows, s.in, s.out, 1.0f, s.y.data(), s.out, s.w.data(), s.out, 0.0f, dx.data(), s.in);
    } else {
      gw.noalias() += s.x.transpose() * s.y;
      dx.noalias() = s.y * s.w.transpose();
    }
    benchmark::DoNotOptimize(gw.data());
    benchmark::DoNotOptimize(dx.data());
  }
  state.SetItemsProcessed(state.iterations() * s.rows);
  state.SetLabel(dnnl ? "onednn" : "eigen");
}
BENCHMARK(BM_GemmBackward)->Arg(0)->Arg(1);

}  // namespace
}  // namespace fieldfm
