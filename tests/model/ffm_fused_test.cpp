// The fused FFM training step (model/ffm_fused.h) against the generic graph:
// same rows, same steps, the same parameter bytes and losses.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "model/network.h"

namespace fieldfm {
namespace {

constexpr uint32_t kFields = 5, kIndices = 40;

// One feature per field (random values), with some rows missing a field and,
// to exercise the fallback, some rows with a repeated field or index.
ExampleBlock Rows(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  ExampleBlock b;
  for (size_t r = 0; r < n; ++r) {
    std::vector<Feature> feats;
    for (uint32_t f = 0; f < kFields; ++f) {
      if (r % 7 == 3 && f == 2) continue;  // absent field
      const uint32_t idx = f * (kIndices / kFields) + uint32_t(rng() % (kIndices / kFields));
      feats.push_back({f, idx, r % 2 ? 1.0f : 0.25f + u(rng)});
    }
    if (r % 11 == 5) feats.push_back({0, feats[0].index + 1, 0.5f});  // two features in field 0
    if (r % 13 == 6) feats.back().index = feats.front().index;        // one index in two fields
    std::swap(feats[0], feats[1]);  // features need not be in field order
    b.add(u(rng) < 0.4f ? 1.0f : 0.3f, 0.5f + u(rng), feats);
  }
  return b;
}

struct Trained {
  ParamStore store;
  double loss = 0, weight = 0;
  uint64_t fused_steps = 0;
};

void Train(ModelSpec spec, bool use_weights, bool fused, const OptimizerConfig& c, Trained* out) {
  out->store.state = 1;
  auto net = Network::Build(spec, &out->store, use_weights, 7);
  ASSERT_TRUE(net.ok()) << net.status().ToString();
  for (auto& [name, t] : out->store.sparse) InitState(c, &t);
  for (auto& [name, p] : out->store.dense) InitState(c, &p);
  (*net)->set_fused(fused);
  const ExampleBlock data = Rows(300, 5);
  for (int epoch = 0; epoch < 2; ++epoch)
    for (size_t r = 0; r < data.rows(); ++r) {
      const BatchView v{data.labels.data() + r, data.weights.data() + r, data.offsets.data() + r,
                        data.features.data(), 1};
      const auto next = r + 1 < data.rows() ? data.row(r + 1) : std::span<const Feature>();
      (*net)->TrainStep(v, RunContext{true, r}, c, r + 1, next);
      out->loss += (*net)->step_loss_sum();
      out->weight += (*net)->step_weight_sum();
    }
  out->fused_steps = (*net)->fused_steps();
}

void ExpectSameBytes(const ParamStore& a, const ParamStore& b) {
  ASSERT_EQ(a.sparse.size(), b.sparse.size());
  for (const auto& [name, t] : a.sparse) {
    const auto& u = b.sparse.at(name);
    ASSERT_EQ(t.data.size(), u.data.size()) << name;
    EXPECT_EQ(0, std::memcmp(t.data.data(), u.data.data(), t.data.size() * sizeof(float))) << name;
  }
  for (const auto& [name, p] : a.dense) {
    const auto& q = b.dense.at(name);
    EXPECT_EQ(0, std::memcmp(p.w.data(), q.w.data(), p.w.size() * sizeof(float))) << name;
    ASSERT_EQ(p.s1.size(), q.s1.size()) << name;
    // memcmp must not see the null data() of an empty vector (SGD keeps no state).
    if (!p.s1.empty()) EXPECT_EQ(0, std::memcmp(p.s1.data(), q.s1.data(), p.s1.size() * sizeof(float))) << name;
  }
}

TEST(FusedFfm, SameBytesAsGenericGraph) {
  for (LossType loss : {LossType::kLogloss, LossType::kSquared, LossType::kRate})
    for (bool normalize : {true, false})
      for (bool use_weights : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "loss " << int(loss) << " normalize " << normalize << " weights "
                                        << use_weights);
        ModelSpec spec;
        spec.type = ModelType::kFfm;
        spec.k = 4;
        spec.num_fields = kFields;
        spec.num_indices = kIndices;
        spec.normalize = normalize;
        spec.loss = loss;
        OptimizerConfig c;
        c.lambda_embedding = 1e-3f;
        Trained generic, fused;
        Train(spec, use_weights, false, c, &generic);
        Train(spec, use_weights, true, c, &fused);
        EXPECT_EQ(generic.fused_steps, 0u);
        // Most rows take the fused kernel, the irregular ones the graph.
        EXPECT_GT(fused.fused_steps, 450u);
        EXPECT_LT(fused.fused_steps, 600u);
        ExpectSameBytes(generic.store, fused.store);
        EXPECT_EQ(generic.loss, fused.loss);
        EXPECT_EQ(generic.weight, fused.weight);
      }
}

TEST(FusedFfm, OtherOptimizersUseTheGraph) {
  ModelSpec spec;
  spec.type = ModelType::kFfm;
  spec.k = 4;
  spec.num_fields = kFields;
  spec.num_indices = kIndices;
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
  ModelSpec spec;
  spec.type = ModelType::kFfm;
  spec.k = 4;
  spec.num_fields = kFields;
  spec.num_indices = kIndices;
  ParamStore store;  // inference: weights only, some values unseen
  auto net = Network::Build(spec, &store, false, 9);
  ASSERT_TRUE(net.ok());
  store.dense.at("bias").w[0] = 0.2f;
  store.known.assign(kIndices, 1);
  for (uint32_t i = 0; i < kIndices; i += 3) store.known[i] = 0;
  for (auto& [name, t] : store.sparse) {
    for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = 0.3f * std::sin(float(i) * 1.7f);
    t.unseen.resize(size_t(kFields) * t.slots * t.k);
    for (size_t i = 0; i < t.unseen.size(); ++i) t.unseen[i] = 0.2f * std::cos(float(i));
  }
  const ExampleBlock data = Rows(200, 8);
  std::vector<float> generic(data.rows()), fused(data.rows());
  (*net)->set_fused(false);
  (*net)->Predict(store, data.view(), generic);
  (*net)->set_fused(true);
  (*net)->Predict(store, data.view(), fused);
  EXPECT_EQ(0, std::memcmp(generic.data(), fused.data(), generic.size() * sizeof(float)));
  EXPECT_NE(generic[0], generic[1]);
}

}  // namespace
}  // namespace fieldfm
