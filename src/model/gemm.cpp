#include "model/gemm.h"

#include <dnnl.h>
#include <omp.h>

#include <Eigen/Core>

namespace fieldfm {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Stride = Eigen::OuterStride<>;

// oneDNN's OpenMP build would start a team of one thread per core inside each
// call; fieldfm's own threads already keep the cores busy. The setting is per
// calling thread, hence once per thread.
void OneThreadPerCall() {
  thread_local const bool done = [] {
    omp_set_num_threads(1);
    return true;
  }();
  (void)done;
}

}  // namespace

void Sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
           int ldb, float beta, float* c, int ldc) {
  if (m == 0 || n == 0) return;
  OneThreadPerCall();
  if (dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) !=
      dnnl_success) {
    SgemmEigen(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

void SgemmEigen(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                int ldb, float beta, float* c, int ldc) {
  Eigen::Map<const RowMat, 0, Stride> A(a, ta ? k : m, ta ? m : k, Stride(lda));
  Eigen::Map<const RowMat, 0, Stride> B(b, tb ? n : k, tb ? k : n, Stride(ldb));
  Eigen::Map<RowMat, 0, Stride> C(c, m, n, Stride(ldc));
  if (beta == 0.0f) C.setZero();
  else if (beta != 1.0f) C *= beta;
  if (ta && tb) C.noalias() += alpha * A.transpose() * B.transpose();
  else if (ta) C.noalias() += alpha * A.transpose() * B;
  else if (tb) C.noalias() += alpha * A * B.transpose();
  else C.noalias() += alpha * A * B;
}

}  // namespace fieldfm
