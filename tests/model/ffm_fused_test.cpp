// The fused FFM training step (model/ffm_fused.h) against the generic graph:
// same rows, same steps, the same parameter bytes and losses.
#include <gtest/gtest.h>

#include <cstring>

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
void TrainGenericAndFused(const ModelSpec& spec, bool use_weights, Trained* generic, Trained* fused) {
  OptimizerConfig c;
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

}  // namespace
}  // namespace fieldfm
