// Every model's end-to-end gradient (score -> link -> loss) against central
// differences, for every loss, with weights, batch norm and dropout.
#include <gtest/gtest.h>

#include "model/network.h"
#include "model/test_util.h"

namespace fieldfm {
namespace {

using testing::CheckParamGrads;
using testing::RandomBlock;

ModelSpec SmallSpec(ModelType type) {
  ModelSpec s;
  s.type = type;
  s.k = 3;
  s.hidden = {5, 4};
  s.activation = Activation::kTanh;  // smooth: finite differences never straddle a kink
  s.num_fields = 3;
  s.num_indices = 12;
  return s;
}

void CheckModel(const ModelSpec& spec, bool use_weights, bool multi, float eps = 1e-2f) {
  ParamStore store;
  store.state = 1;  // optimizer state between the weights: gradients must skip it
  auto net = Network::Build(spec, &store, use_weights, 3);
  ASSERT_TRUE(net.ok()) << net.status().ToString();
  ExampleBlock data = RandomBlock(6, spec.num_fields, spec.num_indices, multi, 4);
  if (spec.loss != LossType::kLogloss)
    for (size_t r = 0; r < data.rows(); ++r) data.labels[r] = 0.2f + 0.6f * data.labels[r];
  // Larger weights than the initialisation so every term matters.
  for (auto& [name, t] : store.sparse)
    for (uint64_t s = 0; s < t.rows * t.slots; ++s)
      for (uint32_t d = 0; d < t.k; ++d) t.data[s * t.slot_stride() + d] = 0.5f * std::sin(float(s * 7 + d) + name.size());
  store.dense["bias"].w[0] = 0.1f;
  const RunContext ctx{true, 11};
  auto loss = [&]() {
    (*net)->Forward(data.view(), ctx);
    return (*net)->loss().loss_sum();
  };
  (*net)->ZeroGrad();
  (*net)->Forward(data.view(), ctx);
  (*net)->Backward(data.view(), ctx);
  CheckParamGrads((*net)->DenseGrads(), (*net)->SparseGrads(), loss, eps, 24, 5e-3);
}

class ModelGradients : public ::testing::TestWithParam<ModelType> {};

TEST_P(ModelGradients, EveryLoss) {
  for (LossType l : {LossType::kLogloss, LossType::kSquared, LossType::kRate}) {
    SCOPED_TRACE(std::string(Name(l)));
    ModelSpec s = SmallSpec(GetParam());
    s.loss = l;
    CheckModel(s, /*use_weights=*/l != LossType::kLogloss, /*multi=*/false);
  }
}

TEST_P(ModelGradients, MultiValuedFieldsMeanPoolingWeights) {
  ModelSpec s = SmallSpec(GetParam());
  s.mean_pooling = true;
  CheckModel(s, true, true);
}

TEST_P(ModelGradients, BatchNormDropoutSummedPairs) {
  ModelSpec s = SmallSpec(GetParam());
  s.batch_norm = true;
  s.dropout = 0.3f;
  s.nffm_sum_pairs = true;
  // Batch normalisation over 6 rows is strongly curved: a smaller step.
  CheckModel(s, false, true, 2e-3f);
}

INSTANTIATE_TEST_SUITE_P(AllModels, ModelGradients,
                         ::testing::Values(ModelType::kLr, ModelType::kFm, ModelType::kFfm, ModelType::kDeepFm,
                                           ModelType::kNfm, ModelType::kDeepFfm, ModelType::kNffm),
                         [](const auto& info) { return std::string(Name(info.param)); });

TEST(Models, GraphsAreCompositionsOfBlocks) {
  ParamStore store;
  ModelSpec s = SmallSpec(ModelType::kDeepFfm);
  auto net = Network::Build(s, &store, false);
  ASSERT_TRUE(net.ok());
  const std::string d = (*net)->Describe();
  for (const char* kind : {"bias", "linear", "field_aware_embedding", "ffm", "dense", "tanh", "sum", "loss"})
    EXPECT_NE(d.find(kind), std::string::npos) << kind << "\n" << d;
  EXPECT_TRUE(store.sparse.count("field_aware_embedding"));
  EXPECT_FALSE(store.sparse.count("embedding"));
}

TEST(Models, RebuildOnExistingStoreChecksShapes) {
  ParamStore store;
  ModelSpec s = SmallSpec(ModelType::kFm);
  ASSERT_TRUE(Network::Build(s, &store, false).ok());
  s.k = 4;
  auto again = Network::Build(s, &store, false);
  EXPECT_FALSE(again.ok());
}

}  // namespace
}  // namespace fieldfm
