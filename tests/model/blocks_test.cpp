// Finite-difference gradient checks for every block, plus the FM and FFM
// fast forms against naive pair sums.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "model/blocks.h"
#include "model/test_util.h"

namespace fieldfm {
namespace {

using testing::CheckParamGrads;
using testing::ExpectClose;
using testing::NumericGrad;
using testing::RandomBlock;

constexpr float kEps = 1e-2f;

Mat RandomMat(int rows, int cols, uint64_t seed, bool away_from_zero = false) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  Mat m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) {
    float v = n(rng);
    if (away_from_zero) v = (v < 0 ? -0.2f : 0.2f) + v;  // keeps ReLU kinks out of the differences
    m.data()[i] = v;
  }
  return m;
}

// L = Σ c ⊙ out for a fixed random c: checks input and parameter gradients.
void CheckBlock(Block& block, const BatchView& batch, std::vector<Mat> inputs, bool training = true,
                double tol = 2e-3) {
  RunContext ctx{training, 42};
  std::vector<const Mat*> in;
  for (auto& m : inputs) in.push_back(&m);
  Mat out;
  block.Forward(batch, in, &out, ctx);
  const Mat c = RandomMat(int(out.rows()), int(out.cols()), 7);
  auto loss = [&]() {
    Mat o;
    block.Forward(batch, in, &o, ctx);
    return double((o.cast<double>().array() * c.cast<double>().array()).sum());
  };
  std::vector<Mat> din;
  for (auto& m : inputs) din.push_back(Mat::Zero(m.rows(), m.cols()));
  std::vector<Mat*> dinp;
  for (auto& m : din) dinp.push_back(&m);
  block.ZeroGrad();
  block.Forward(batch, in, &out, ctx);
  block.Backward(batch, in, out, c, dinp, ctx);
  for (size_t i = 0; i < inputs.size(); ++i)
    for (Eigen::Index e = 0; e < inputs[i].size(); ++e)
      ExpectClose(din[i].data()[e], NumericGrad(inputs[i].data() + e, loss, kEps),
                  block.kind() + " input " + std::to_string(i) + "[" + std::to_string(e) + "]", tol);
  std::vector<DenseGradRef> dense;
  std::vector<SparseGradRef> sparse;
  block.Grads(&dense, &sparse);
  CheckParamGrads(dense, sparse, loss, kEps, 64, tol);
}

// A store with random tables for the sparse blocks.
struct SparseFixture {
  static constexpr uint32_t kFields = 4, kIndices = 20, kK = 3;
  ParamStore store;
  ExampleBlock data = RandomBlock(6, kFields, kIndices, /*multi=*/true, 3);
  SparseTable* Table(const std::string& name, uint32_t slots, uint32_t k, int state = 1) {
    store.num_fields = kFields;
    store.num_indices = kIndices;
    SparseTable& t = store.sparse[name];
    t.rows = kIndices;
    t.slots = slots;
    t.k = k;
    t.state = state;  // state floats in between: the blocks must skip them
    t.data.assign(t.rows * t.row_stride(), 0.0f);
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<float> u(-1, 1);
    for (float& v : t.data) v = u(rng);
    return &t;
  }
};

// A batch's sparse gradient: one entry per distinct row, in first-seen order,
// summed over repeats (rows 2^32 apart stay apart); clear() leaves nothing
// behind for the next batch, across rehashes. Both ways of finding an entry:
// the hash (table size unknown, or rows beyond it) and the direct map.
TEST(SparseGrad, CoalescesRepeatsAndClearsForTheNextBatch) {
  for (const uint64_t table_rows : {uint64_t(0), uint64_t(700), SparseGrad::kDirectRows + 1}) {
    SCOPED_TRACE(table_rows);
    SparseGrad g;
    g.width = 2;
    g.table_rows = table_rows;
    g.coalesce = true;
    for (int batch = 0; batch < 3; ++batch) {
      std::vector<uint64_t> want_rows;
      std::vector<float> want_sum;
      std::mt19937_64 rng(batch);
      for (int i = 0; i < 5000; ++i) {
        uint64_t row = rng() % 700;
        if (i % 9 == 0) row += uint64_t(1) << 32;  // same low bits as `row`, another row
        float* v = g.Accumulate(row);
        v[0] += 1.0f;
        v[1] += float(row % 5);
        auto it = std::find(want_rows.begin(), want_rows.end(), row);
        if (it == want_rows.end()) {
          want_rows.push_back(row);
          want_sum.push_back(0.0f);
          it = want_rows.end() - 1;
        }
        want_sum[it - want_rows.begin()] += 1.0f;
      }
      ASSERT_EQ(g.rows, want_rows);
      ASSERT_EQ(g.values.size(), 2 * want_rows.size());
      for (size_t e = 0; e < want_rows.size(); ++e) {
        EXPECT_EQ(g.values[2 * e], want_sum[e]);
        EXPECT_EQ(g.values[2 * e + 1], want_sum[e] * float(want_rows[e] % 5));
      }
      g.clear();
      EXPECT_TRUE(g.rows.empty());
    }
  }
}

TEST(BlockGradients, Linear) {
  for (bool normalize : {false, true}) {
    SparseFixture fx;
    auto b = MakeLinear(&fx.store, fx.Table("linear", 1, 1), normalize);
    CheckBlock(*b, fx.data.view(), {});
  }
}

TEST(Blocks, NormalisedLinearScalesByInverseL2NormOfTheRow) {
  SparseFixture fx;
  SparseTable* t = fx.Table("linear", 1, 1);
  auto plain = MakeLinear(&fx.store, t, false);
  auto normed = MakeLinear(&fx.store, t, true);
  Mat a, b;
  RunContext ctx;
  plain->Forward(fx.data.view(), {}, &a, ctx);
  normed->Forward(fx.data.view(), {}, &b, ctx);
  for (size_t r = 0; r < fx.data.rows(); ++r) {
    double sq = 0;
    for (const Feature& f : fx.data.row(r)) sq += double(f.value) * f.value;
    EXPECT_NEAR(b(r, 0), a(r, 0) / std::sqrt(sq), 1e-5) << "row " << r;
  }
}

TEST(BlockGradients, EmbeddingSumAndMeanPooling) {
  for (bool mean : {false, true}) {
    SparseFixture fx;
    auto b = MakeEmbeddingPool(&fx.store, fx.Table("embedding", 1, fx.kK), mean);
    CheckBlock(*b, fx.data.view(), {});
  }
}

TEST(BlockGradients, FieldAwareEmbedding) {
  for (bool mean : {false, true}) {
    SparseFixture fx;
    auto b = MakeFieldAwareEmbedding(&fx.store, fx.Table("ffe", fx.kFields, fx.kK), mean);
    CheckBlock(*b, fx.data.view(), {});
  }
}

TEST(BlockGradients, FieldPairEmbedding) {
  for (bool mean : {false, true})
    for (bool sum : {false, true}) {
      SparseFixture fx;
      auto b = MakeFieldPairEmbedding(&fx.store, fx.Table("ffe", fx.kFields, fx.kK), mean, sum);
      CheckBlock(*b, fx.data.view(), {});
    }
}

TEST(BlockGradients, EmbeddingBiInteraction) {
  for (bool mean : {false, true})
    for (bool normalize : {false, true}) {
      SparseFixture fx;
      auto b = MakeEmbeddingBiInteraction(&fx.store, fx.Table("embedding", 1, fx.kK), mean, normalize);
      CheckBlock(*b, fx.data.view(), {});
    }
}

// A fused input block against the two blocks it replaces (an embedding, then
// `second` on its output): outputs and the table's summed gradients, equal
// within out_tol and grad_tol relative (0: to the bit).
void ExpectFusedEqualsTwoBlocks(Block& fused, Block& emb, Block& second, const BatchView& v, double out_tol,
                                double grad_tol) {
  const RunContext ctx{true, 1};
  Mat out_fused, e, out_two;
  fused.Forward(v, {}, &out_fused, ctx);
  emb.Forward(v, {}, &e, ctx);
  const Mat* e_in[] = {&e};
  second.Forward(v, e_in, &out_two, ctx);
  ASSERT_EQ(out_fused.rows(), out_two.rows());
  ASSERT_EQ(out_fused.cols(), out_two.cols());
  const auto expect_close = [](double got, double want, double tol, const auto& where) {
    if (tol == 0) {
      EXPECT_EQ(float(got), float(want)) << where;
    } else {
      EXPECT_NEAR(got, want, tol * (1 + std::fabs(want))) << where;
    }
  };
  for (Eigen::Index i = 0; i < out_fused.size(); ++i) expect_close(out_fused.data()[i], out_two.data()[i], out_tol, i);
  const Mat dout = RandomMat(int(out_two.rows()), int(out_two.cols()), 10);
  Mat de = Mat::Zero(e.rows(), e.cols());
  Mat* de_out[] = {&de};
  fused.ZeroGrad();
  emb.ZeroGrad();
  fused.Backward(v, {}, out_fused, dout, {}, ctx);
  second.Backward(v, e_in, out_two, dout, de_out, ctx);
  emb.Backward(v, {}, e, de, {}, ctx);
  std::vector<DenseGradRef> dense;
  std::vector<SparseGradRef> gf, ge;
  fused.Grads(&dense, &gf);
  emb.Grads(&dense, &ge);
  const auto got = testing::Aggregate(*gf[0].grad), want = testing::Aggregate(*ge[0].grad);
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [row, g] : want)
    for (size_t d = 0; d < g.size(); ++d)
      expect_close(got.at(row)[d], g[d], grad_tol, ::testing::Message() << "row " << row << " [" << d << "]");
}

// The fused NFM input block gives the floats of embedding pooling ->
// bi-interaction exactly (the same operations in the same order), one-hot and
// multi-valued rows, sum and mean pooling, with and without instance
// normalisation, k = 4 (the vectorised pooling) and 3, 16.
TEST(FastForms, EmbeddingBiInteractionEqualsTwoBlocks) {
  for (uint32_t k : {3u, 4u, 16u})
    for (bool multi : {false, true})
      for (bool mean : {false, true})
        for (bool normalize : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "k " << k << " multi " << multi << " mean " << mean << " normalize "
                                            << normalize);
          SparseFixture fx;
          fx.data = RandomBlock(7, fx.kFields, fx.kIndices, multi, 9);
          SparseTable* t = fx.Table("embedding", 1, k);
          ExpectFusedEqualsTwoBlocks(*MakeEmbeddingBiInteraction(&fx.store, t, mean, normalize),
                                     *MakeEmbeddingPool(&fx.store, t, mean), *MakeBiInteraction(fx.kFields, k, normalize),
                                     fx.data.view(), 0, 0);
        }
}

// The fused NFFM input block equals field-aware embedding -> pair products
// (within rounding: it sums in another order), one-hot and multi-valued rows,
// k = 4 and 16 (vectorised kernels) and 3 (generic).
TEST(FastForms, FieldPairEmbeddingEqualsTwoBlocks) {
  for (uint32_t k : {3u, 4u, 16u})
    for (bool multi : {false, true})
      for (bool mean : {false, true})
        for (bool sum : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "k " << k << " multi " << multi << " mean " << mean << " sum " << sum);
          SparseFixture fx;
          fx.data = RandomBlock(7, fx.kFields, fx.kIndices, multi, 9);
          SparseTable* t = fx.Table("ffe", fx.kFields, k);
          ExpectFusedEqualsTwoBlocks(*MakeFieldPairEmbedding(&fx.store, t, mean, sum),
                                     *MakeFieldAwareEmbedding(&fx.store, t, mean),
                                     *MakeFieldPairProducts(fx.kFields, k, sum), fx.data.view(), 1e-6, 1e-5);
        }
}

TEST(BlockGradients, Interactions) {
  const uint32_t F = 4, k = 3;
  BatchView none{nullptr, nullptr, nullptr, nullptr, 5};
  CheckBlock(*MakeFmSecondOrder(F, k), none, {RandomMat(5, F * k, 1)});
  CheckBlock(*MakeBiInteraction(F, k), none, {RandomMat(5, F * k, 2)});
  CheckBlock(*MakeFfmSecondOrder(F, k), none, {RandomMat(5, F * F * k, 3)});
  CheckBlock(*MakeFieldPairProducts(F, k, false), none, {RandomMat(5, F * F * k, 4)});
  CheckBlock(*MakeFieldPairProducts(F, k, true), none, {RandomMat(5, F * F * k, 5)});
  // Instance normalisation reads the batch's feature values.
  ExampleBlock rows = RandomBlock(5, F, 20, /*multi=*/true, 6);
  CheckBlock(*MakeFmSecondOrder(F, k, true), rows.view(), {RandomMat(5, F * k, 7)});
  CheckBlock(*MakeFfmSecondOrder(F, k, true), rows.view(), {RandomMat(5, F * F * k, 8)});
  CheckBlock(*MakeBiInteraction(F, k, true), rows.view(), {RandomMat(5, F * k, 9)});
}

TEST(BlockGradients, DenseBiasConcatSum) {
  BatchView none{nullptr, nullptr, nullptr, nullptr, 4};
  DenseParam w, b, bias;
  Mat wm = RandomMat(5, 3, 11), bm = RandomMat(1, 3, 12);
  w.w.assign(wm.data(), wm.data() + wm.size());
  b.w.assign(bm.data(), bm.data() + bm.size());
  bias.w = {0.3f};
  CheckBlock(*MakeDense(&w, &b, 5, 3, "d"), none, {RandomMat(4, 5, 13)});
  CheckBlock(*MakeBias(&bias), none, {});
  CheckBlock(*MakeConcat({2, 3}), none, {RandomMat(4, 2, 14), RandomMat(4, 3, 15)});
  CheckBlock(*MakeSum(2), none, {RandomMat(4, 2, 16), RandomMat(4, 2, 17), RandomMat(4, 2, 18)});
}

TEST(BlockGradients, Activations) {
  BatchView none{nullptr, nullptr, nullptr, nullptr, 4};
  for (Activation a : {Activation::kRelu, Activation::kTanh, Activation::kSigmoid, Activation::kIdentity})
    CheckBlock(*MakeActivation(a, 6), none, {RandomMat(4, 6, 20, /*away_from_zero=*/true)});
}

TEST(BlockGradients, DropoutTrainingAndInference) {
  BatchView none{nullptr, nullptr, nullptr, nullptr, 4};
  auto d = MakeDropout(0.5f, 8, 1);
  CheckBlock(*d, none, {RandomMat(4, 8, 21)}, /*training=*/true);
  CheckBlock(*d, none, {RandomMat(4, 8, 22)}, /*training=*/false);
  // Training drops some units and scales the rest by 1/(1-p); inference is the identity.
  Mat x = Mat::Ones(4, 8), out;
  std::vector<const Mat*> in{&x};
  d->Forward(none, in, &out, RunContext{true, 9});
  int zeros = 0;
  for (Eigen::Index i = 0; i < out.size(); ++i) {
    EXPECT_TRUE(out.data()[i] == 0.0f || out.data()[i] == 2.0f);
    zeros += out.data()[i] == 0.0f;
  }
  EXPECT_GT(zeros, 0);
  EXPECT_LT(zeros, 32);
  d->Forward(none, in, &out, RunContext{false, 9});
  EXPECT_EQ(out, x);
}

TEST(BlockGradients, BatchNormTrainingAndRunningStatistics) {
  BatchView none{nullptr, nullptr, nullptr, nullptr, 6};
  DenseParam gamma, beta, rm, rv;
  gamma.w = {1.5f, 0.5f, 1.0f};
  beta.w = {0.1f, -0.2f, 0.3f};
  rm.w = {0, 0, 0};
  rv.w = {1, 1, 1};
  rm.trainable = rv.trainable = false;
  auto bn = MakeBatchNorm(&gamma, &beta, &rm, &rv, 3, "bn");
  CheckBlock(*bn, none, {RandomMat(6, 3, 30)}, /*training=*/true, 5e-3);
  CheckBlock(*bn, none, {RandomMat(6, 3, 31)}, /*training=*/false);
  // Running statistics converge to the data's statistics.
  Mat x = RandomMat(6, 3, 32), out;
  x.col(0).array() += 4.0f;
  std::vector<const Mat*> in{&x};
  for (int i = 0; i < 200; ++i) bn->Forward(none, in, &out, RunContext{true, 0});
  EXPECT_NEAR(rm.w[0], x.col(0).mean(), 1e-3);
  const float var0 = (x.col(0).array() - x.col(0).mean()).square().mean();
  EXPECT_NEAR(rv.w[0], var0, 1e-3);
}

TEST(BlockGradients, LossesAndLinks) {
  ExampleBlock data = RandomBlock(6, 2, 4, false, 8);
  for (float& y : data.labels) y = y * 0.7f + 0.1f;  // fractional targets: rates
  for (LossType l : {LossType::kLogloss, LossType::kSquared, LossType::kRate})
    for (bool weighted : {false, true}) {
      LossBlock block(l, weighted);
      Mat phi = RandomMat(6, 1, 40), out, din = Mat::Zero(6, 1);
      std::vector<const Mat*> in{&phi};
      std::vector<Mat*> dinp{&din};
      auto loss = [&]() {
        Mat o;
        block.Forward(data.view(), in, &o, RunContext{});
        return block.loss_sum();
      };
      block.Forward(data.view(), in, &out, RunContext{});
      block.Backward(data.view(), in, out, out, dinp, RunContext{});
      for (int r = 0; r < 6; ++r)
        ExpectClose(din(r, 0), NumericGrad(&phi(r, 0), loss, 1e-3f), std::string(Name(l)));
      // The link: σ for logloss and rate, identity for squared error.
      const float expected = l == LossType::kSquared ? phi(0, 0) : 1.0f / (1.0f + std::exp(-phi(0, 0)));
      EXPECT_NEAR(out(0, 0), expected, 1e-6);
    }
}

// ---- fast forms equal naive pair sums ---------------------------------------

TEST(FastForms, FmEqualsNaivePairSum) {
  for (bool multi : {false, true}) {
    SparseFixture fx;
    fx.data = RandomBlock(5, fx.kFields, fx.kIndices, multi, 12);
    SparseTable* t = fx.Table("embedding", 1, fx.kK);
    auto emb = MakeEmbeddingPool(&fx.store, t, false);
    auto fm = MakeFmSecondOrder(fx.kFields, fx.kK);
    Mat e, out;
    std::vector<const Mat*> none, in{&e};
    emb->Forward(fx.data.view(), none, &e, RunContext{true});
    fm->Forward(fx.data.view(), in, &out, RunContext{true});
    for (size_t r = 0; r < fx.data.rows(); ++r) {
      auto feats = fx.data.row(r);
      double naive = 0;
      for (size_t i = 0; i < feats.size(); ++i)
        for (size_t l = i + 1; l < feats.size(); ++l) {
          if (feats[i].field == feats[l].field) continue;  // documented: no within-field pairs
          for (uint32_t d = 0; d < fx.kK; ++d)
            naive += double(t->row(feats[i].index)[d]) * t->row(feats[l].index)[d] * feats[i].value * feats[l].value;
        }
      EXPECT_NEAR(out(r, 0), naive, 1e-4 * std::max(1.0, std::fabs(naive))) << "row " << r;
    }
  }
}

TEST(FastForms, FfmEqualsNaiveReference) {
  for (bool multi : {false, true}) {
    SparseFixture fx;
    fx.data = RandomBlock(5, fx.kFields, fx.kIndices, multi, 13);
    SparseTable* t = fx.Table("ffe", fx.kFields, fx.kK);
    auto emb = MakeFieldAwareEmbedding(&fx.store, t, false);
    auto ffm = MakeFfmSecondOrder(fx.kFields, fx.kK);
    Mat e, out;
    std::vector<const Mat*> none, in{&e};
    emb->Forward(fx.data.view(), none, &e, RunContext{true});
    ffm->Forward(fx.data.view(), in, &out, RunContext{true});
    const uint32_t ss = t->slot_stride();
    for (size_t r = 0; r < fx.data.rows(); ++r) {
      auto feats = fx.data.row(r);
      double naive = 0;
      for (size_t i = 0; i < feats.size(); ++i)
        for (size_t l = i + 1; l < feats.size(); ++l) {
          if (feats[i].field == feats[l].field) continue;
          const float* a = t->row(feats[i].index) + feats[l].field * ss;  // v_{j(i), f(l)}
          const float* b = t->row(feats[l].index) + feats[i].field * ss;  // v_{j(l), f(i)}
          for (uint32_t d = 0; d < fx.kK; ++d) naive += double(a[d]) * b[d] * feats[i].value * feats[l].value;
        }
      EXPECT_NEAR(out(r, 0), naive, 1e-4 * std::max(1.0, std::fabs(naive))) << "row " << r;
    }
  }
}

}  // namespace
}  // namespace fieldfm
