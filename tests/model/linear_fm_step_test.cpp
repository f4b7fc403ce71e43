// The one-row lr / fm step (LinearFmStep, used by Network::TrainStep) against
// the generic graph: same rows, same steps, the same parameter bytes and losses.
#include <gtest/gtest.h>

#include <bit>
#include <cstring>

#include "model/blocks.h"
#include "model/fused_step_util.h"
#include "model/network.h"

namespace fieldfm {
namespace {

using testing::ExpectSameBytes;
using testing::kFields;
using testing::kIndices;
using testing::Trained;

void Train(const ModelSpec& spec, bool use_weights, bool fused, const OptimizerConfig& c, Trained* out) {
  testing::Train(spec, use_weights, fused, c, /*unknown_field=*/true, out);
}

ModelSpec Spec(ModelType type, uint32_t k, LossType loss, bool normalize) {
  ModelSpec spec;
  spec.type = type;
  spec.k = k;
  spec.num_fields = kFields;
  spec.num_indices = kIndices;
  spec.loss = loss;
  spec.normalize = normalize;
  return spec;
}

TEST(LinearFmStep, SameBytesAsGenericGraph) {
  for (ModelType type : {ModelType::kLr, ModelType::kFm})
    for (uint32_t k : {3u, 4u, 8u})
      for (OptimizerType opt : {OptimizerType::kAdaGrad, OptimizerType::kSgd, OptimizerType::kFtrl})
        for (LossType loss : {LossType::kLogloss, LossType::kSquared, LossType::kRate})
          for (bool normalize : {true, false})
            for (bool use_weights : {false, true}) {
              if (type == ModelType::kLr && k != 3) continue;
              SCOPED_TRACE(::testing::Message() << Name(type) << " k " << k << " " << Name(opt) << " " << Name(loss)
                                                << " normalize " << normalize << " weights " << use_weights);
              const ModelSpec spec = Spec(type, k, loss, normalize);
              OptimizerConfig c;
              c.type = c.dense_type = opt;  // one optimizer for bias and rows, as train sets it for lr/fm
              c.lr = c.dense_lr = 0.05f;
              Trained fused, graph;
              Train(spec, use_weights, true, c, &fused);
              Train(spec, use_weights, false, c, &graph);
              EXPECT_EQ(fused.fused_steps, 600u);
              EXPECT_EQ(graph.fused_steps, 0u);
              ExpectSameBytes(fused.store, graph.store);
              EXPECT_EQ(fused.loss, graph.loss);
              EXPECT_EQ(fused.weight, graph.weight);
            }
}

TEST(LinearFmStep, FallsBackToTheGraphForAdamAndMeanPooling) {
  ModelSpec spec;
  spec.type = ModelType::kFm;
  spec.num_fields = kFields;
  spec.num_indices = kIndices;
  OptimizerConfig adam;
  adam.type = OptimizerType::kAdam;
  Trained t;
  Train(spec, false, true, adam, &t);
  EXPECT_EQ(t.fused_steps, 0u);
  spec.mean_pooling = true;
  Train(spec, false, true, OptimizerConfig{}, &t);
  EXPECT_EQ(t.fused_steps, 0u);
}

// Inference: the one-row path scores every row as the graph does, unseen
// values (the field mean rows) and features of unknown fields included.
TEST(LinearFmStep, PredictSameAsGenericGraph) {
  for (ModelType type : {ModelType::kLr, ModelType::kFm})
    for (uint32_t k : {3u, 4u, 8u})
      for (LossType loss : {LossType::kLogloss, LossType::kSquared})
        for (bool normalize : {true, false}) {
          if (type == ModelType::kLr && k != 3) continue;
          SCOPED_TRACE(::testing::Message() << Name(type) << " k " << k << " " << Name(loss) << " normalize "
                                            << normalize);
          ParamStore store;
          auto net = Network::Build(Spec(type, k, loss, normalize), &store, false, 9);
          ASSERT_TRUE(net.ok());
          testing::FillForInference(&store);
          testing::ExpectFusedPredictSameAsGraph(**net, store, testing::Rows(200, 8, /*unknown_field=*/true));
        }
}

// With the known flags folded into the linear weights (as LoadModel does for
// lr and fm), the same floats again; indices past the tables included.
TEST(LinearFmStep, PredictWithKnownFoldedIntoLinearSameAsGraph) {
  for (ModelType type : {ModelType::kLr, ModelType::kFm})
    for (uint32_t k : {3u, 4u, 8u}) {
      if (type == ModelType::kLr && k != 3) continue;
      SCOPED_TRACE(::testing::Message() << Name(type) << " k " << k);
      ParamStore store;
      auto net = Network::Build(Spec(type, k, LossType::kLogloss, true), &store, false, 9);
      ASSERT_TRUE(net.ok());
      testing::FillForInference(&store);
      ExampleBlock data = testing::Rows(200, 8, /*unknown_field=*/true);
      data.features[4].index = kIndices + 3;
      std::vector<float> graph(data.rows()), folded(data.rows());
      (*net)->set_fused(false);
      (*net)->Predict(store, data.view(), graph);
      ASSERT_TRUE(FoldKnownIntoLinear(&store));
      EXPECT_EQ(store.known_linear.w.size(), kIndices);
      // The folded weights alone now say which indices are known: with every
      // flag set, the graph would score the unseen indices by their own rows.
      store.known.assign(kIndices, 1);
      (*net)->set_fused(true);
      (*net)->Predict(store, data.view(), folded);
      EXPECT_EQ(0, std::memcmp(graph.data(), folded.data(), graph.size() * sizeof(float)));
      (*net)->set_fused(false);
      (*net)->Predict(store, data.view(), folded);
      EXPECT_NE(0, std::memcmp(graph.data(), folded.data(), graph.size() * sizeof(float)));
    }
}

TEST(LinearFmStep, FoldKnownIntoLinearRefusesWhatItCannotFold) {
  ParamStore store;
  auto net = Network::Build(Spec(ModelType::kFm, 4, LossType::kLogloss, true), &store, false, 9);
  ASSERT_TRUE(net.ok());
  testing::FillForInference(&store);
  store.sparse.at("linear").data[1] = std::bit_cast<float>(KnownLinear::kUnknownBits);  // a known index
  EXPECT_FALSE(FoldKnownIntoLinear(&store));
  EXPECT_TRUE(store.known_linear.empty());
  store.sparse.at("linear").data[1] = 0.5f;
  store.known.resize(kIndices - 1);  // flags that do not match the table
  EXPECT_FALSE(FoldKnownIntoLinear(&store));
  store.known.assign(kIndices, 1);
  EXPECT_TRUE(FoldKnownIntoLinear(&store));
  store.sparse.erase("linear");
  EXPECT_FALSE(FoldKnownIntoLinear(&store));
  EXPECT_TRUE(store.known_linear.empty());
}

}  // namespace
}  // namespace fieldfm
