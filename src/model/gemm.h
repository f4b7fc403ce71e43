// Row-major single-precision matrix products for the dense layers, through
// oneDNN's sgemm (why: docs/models.md, "Dense layers"). Always one thread per
// call: fieldfm parallelises over rows and requests itself.
#pragma once

namespace fieldfm {

// C(m×n) = alpha·op(A)·op(B) + beta·C, all row-major; op(X) = Xᵀ when trans_X.
// lda/ldb/ldc are the row strides of A, B and C as stored.
void Sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
           int ldb, float beta, float* c, int ldc);

// The same product through Eigen: Sgemm's fallback should oneDNN refuse the
// arguments, and the tests' reference.
void SgemmEigen(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                const float* b, int ldb, float beta, float* c, int ldc);

}  // namespace fieldfm
