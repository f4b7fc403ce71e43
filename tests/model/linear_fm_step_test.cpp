// The one-row lr / fm step (LinearFmStep, used by Network::TrainStep) against
// the generic graph: same rows, same steps, the same parameter bytes and losses.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "model/network.h"

namespace fieldfm {
namespace {

constexpr uint32_t kFields = 5, kIndices = 40;

// One feature per field with random values; some rows miss a field, repeat a
// field, repeat an index or carry a feature of a field the model has not seen.
ExampleBlock Rows(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  ExampleBlock b;
  for (size_t r = 0; r < n; ++r) {
    std::vector<Feature> feats;
    for (uint32_t f = 0; f < kFields; ++f) {
      if (r % 7 == 3 && f == 2) continue;
      const uint32_t idx = f * (kIndices / kFields) + uint32_t(rng() % (kIndices / kFields));
      feats.push_back({f, idx, r % 2 ? 1.0f : 0.25f + u(rng)});
    }
    if (r % 11 == 5) feats.push_back({0, feats[0].index + 1, 0.5f});
    if (r % 13 == 6) feats.back().index = feats.front().index;
    if (r % 17 == 8) feats.push_back({kFields + 1, 3, 1.0f});
    std::swap(feats[0], feats[1]);
    b.add(u(rng) < 0.4f ? 1.0f : 0.3f, 0.5f + u(rng), feats);
  }
  return b;
}

struct Trained {
  ParamStore store;
  double loss = 0, weight = 0;
  uint64_t fused_steps = 0;
};

void Train(const ModelSpec& spec, bool use_weights, bool fused, const OptimizerConfig& c, Trained* out) {
  out->store.state = StateCount(c.type);
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
              ModelSpec spec;
              spec.type = type;
              spec.k = k;
              spec.num_fields = kFields;
              spec.num_indices = kIndices;
              spec.loss = loss;
              spec.normalize = normalize;
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

}  // namespace
}  // namespace fieldfm
