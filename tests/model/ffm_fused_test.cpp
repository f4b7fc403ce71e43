// The fused FFM training step (model/ffm_fused.h) against the generic graph:
// same rows, same steps, the same parameter bytes and losses.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "model/ffm_fused.h"
#include "model/fused_step_util.h"
#include "model/network.h"

namespace fieldfm {
namespace {

using testing::ExpectSameBytes;
using testing::kFields;
using testing::kIndices;
using testing::Trained;

void Train(const ModelSpec& spec, bool use_weights, bool fused, const OptimizerConfig& c, Trained* out) {
  testing::Train(spec, use_weights, fused, c, /*unknown_field=*/false, out);
}

ModelSpec FfmSpec(uint32_t fields = kFields) {
  ModelSpec spec;
  spec.type = ModelType::kFfm;
  spec.k = 4;
  spec.num_fields = fields;
  spec.num_indices = fields * testing::kIndicesPerField;
  return spec;
}

// The same rows trained through the generic graph and through the fused step.
void TrainGenericAndFused(const ModelSpec& spec, bool use_weights, Trained* generic, Trained* fused,
                          OptimizerType type = OptimizerType::kAdaGrad) {
  OptimizerConfig c;
  c.type = type;
  c.lambda_embedding = 1e-3f;
  Train(spec, use_weights, false, c, generic);
  Train(spec, use_weights, true, c, fused);
}

TEST(FusedFfm, SameBytesAsGenericGraph) {
  for (LossType loss : {LossType::kLogloss, LossType::kSquared, LossType::kRate})
    for (bool normalize : {true, false})
      for (bool use_weights : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "loss " << int(loss) << " normalize " << normalize << " weights "
                                        << use_weights);
        ModelSpec spec = FfmSpec();
        spec.normalize = normalize;
        spec.loss = loss;
        Trained generic, fused;
        TrainGenericAndFused(spec, use_weights, &generic, &fused);
        EXPECT_EQ(generic.fused_steps, 0u);
        // Most rows take the fused kernel, the irregular ones the graph.
        EXPECT_GT(fused.fused_steps, 450u);
        EXPECT_LT(fused.fused_steps, 600u);
        ExpectSameBytes(generic.store, fused.store);
        EXPECT_EQ(generic.loss, fused.loss);
        EXPECT_EQ(generic.weight, fused.weight);
      }
}

// Row-wise AdaGrad (one accumulator per slot, after the row's weights): the
// fused kernel's in-lane sums give the generic update's bytes, with all,
// some and few fields present (39 fields: every 4-pair step contiguous).
TEST(FusedFfm, RowWiseAdaGradSameBytesAsGenericGraph) {
  for (uint32_t fields : {uint32_t(kFields), 13u, 39u})
    for (bool normalize : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "fields " << fields << " normalize " << normalize);
      ModelSpec spec = FfmSpec(fields);
      spec.normalize = normalize;
      Trained generic, fused;
      TrainGenericAndFused(spec, true, &generic, &fused, OptimizerType::kRowAdaGrad);
      EXPECT_EQ(generic.fused_steps, 0u);
      EXPECT_GT(fused.fused_steps, 450u);
      const SparseTable& emb = fused.store.sparse.at("field_aware_embedding");
      EXPECT_EQ(emb.state, 0u);
      ASSERT_EQ(emb.slot_state, 1u);
      EXPECT_EQ(emb.row_stride(), uint64_t(fields) * 5);
      ExpectSameBytes(generic.store, fused.store);
      EXPECT_EQ(generic.loss, fused.loss);
      // The accumulators moved off their initial 1.0 (the fused kernel wrote them).
      int moved = 0;
      for (uint64_t r = 0; r < emb.rows; ++r)
        for (uint32_t s = 0; s < emb.slots; ++s)
          moved += const_cast<SparseTable&>(emb).slot_states(const_cast<SparseTable&>(emb).row(r))[s] > 1.0f;
      EXPECT_GT(moved, int(emb.rows));
    }
}

// 13 fields: a row's pair loop runs its 4-, 2- and 1-pair steps (AVX-512,
// AVX2, SSE) with every remainder.
TEST(FusedFfm, SameBytesAsGenericGraphWithManyFields) {
  const ModelSpec spec = FfmSpec(13);
  Trained generic, fused;
  TrainGenericAndFused(spec, false, &generic, &fused);
  EXPECT_GT(fused.fused_steps, 450u);
  ExpectSameBytes(generic.store, fused.store);
  EXPECT_EQ(generic.loss, fused.loss);
}

TEST(FusedFfm, OtherOptimizersUseTheGraph) {
  const ModelSpec spec = FfmSpec();
  OptimizerConfig c;
  c.type = OptimizerType::kSgd;
  Trained t;
  Train(spec, false, true, c, &t);
  EXPECT_EQ(t.fused_steps, 0u);
  // The fused step updates the bias with the sparse optimizer, so a separate
  // dense optimizer (--dense-optimizer) sends every row through the graph.
  OptimizerConfig split;
  split.dense_type = OptimizerType::kAdam;
  split.dense_lr = 0.001f;
  Trained graph_only;
  Train(spec, false, true, split, &graph_only);
  EXPECT_EQ(graph_only.fused_steps, 0u);
}

TEST(FusedFfm, PredictSameAsGenericGraph) {
  const ModelSpec spec = FfmSpec();
  ParamStore store;
  auto net = Network::Build(spec, &store, false, 9);
  ASSERT_TRUE(net.ok());
  testing::FillForInference(&store);
  testing::ExpectFusedPredictSameAsGraph(**net, store, testing::Rows(200, 8, /*unknown_field=*/false));
}

// A table read from a mapped file (emulated: `mapped` set, weights only):
// copied into local rows, read in place, or the probe that times both and
// keeps one, the fused predictions are the generic graph's bytes.
TEST(FusedFfm, MappedTablePredictsTheSameCopiedOrInPlace) {
  for (uint32_t fields : {uint32_t(kFields), 39u}) {
    SCOPED_TRACE(::testing::Message() << "fields " << fields);
    const ModelSpec spec = FfmSpec(fields);
    ParamStore store;
    auto net = Network::Build(spec, &store, false, 9);
    ASSERT_TRUE(net.ok());
    testing::FillForInference(&store);
    SparseTable& emb = store.sparse.at("field_aware_embedding");
    const FloatVec file = emb.data;
    emb.mapped = const_cast<float*>(file.data());
    emb.data.assign(emb.data.size(), std::nanf(""));  // a read of the unmapped copy would show
    const size_t n = 2 * FusedFfm::kProbeBlocks * FusedFfm::kProbeBlockRows;  // some rows take the graph
    const ExampleBlock data = testing::Rows(n, 8, /*unknown_field=*/false, fields);
    std::vector<float> generic(n);
    (*net)->set_fused(false);
    (*net)->Predict(store, data.view(), generic);
    ASSERT_FALSE(std::isnan(generic[0]));
    for (auto way : {FusedFfm::MappedRead::kCopy, FusedFfm::MappedRead::kInPlace, FusedFfm::MappedRead::kProbe}) {
      SCOPED_TRACE(::testing::Message() << "way " << int(way));
      FusedFfm fused(&store.dense.at("bias"), &store.sparse.at("linear"), &emb, fields, spec.normalize, spec.loss,
                     false);
      fused.set_mapped_read(way);
      size_t same = 0, taken = 0;
      for (size_t r = 0; r < n; ++r) {
        float p;
        if (!fused.Predict(store, data.row(r), &p)) continue;  // a field repeated: the graph's case
        ++taken;
        same += std::memcmp(&p, &generic[r], sizeof(float)) == 0;
      }
      EXPECT_GT(taken, n * 8 / 10);
      EXPECT_EQ(same, taken);
      // The probe has decided by the end; a set way stays.
      if (way == FusedFfm::MappedRead::kProbe) {
        EXPECT_NE(fused.mapped_read(), FusedFfm::MappedRead::kProbe);
      } else {
        EXPECT_EQ(fused.mapped_read(), way);
      }
    }
  }
}

}  // namespace
}  // namespace fieldfm
