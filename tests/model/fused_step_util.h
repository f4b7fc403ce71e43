// Shared by the fused-step tests (ffm_fused_test, linear_fm_step_test): rows
// that exercise the fallbacks, training through Network::TrainStep with the
// fused kernels on or off, and a byte comparison of two parameter stores.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "model/network.h"

namespace fieldfm::testing {

constexpr uint32_t kFields = 5, kIndicesPerField = 8, kIndices = kFields * kIndicesPerField;

// One feature per field with random values; some rows miss a field, repeat a
// field or an index, and (with `unknown_field`) carry a feature of a field the
// model has not seen. Features are not in field order. Odd rows have every
// value 1 (the FFM kernels' one-hot path, which skips the products with the
// values), even rows other values: the byte comparisons cover both.
inline ExampleBlock Rows(size_t n, uint64_t seed, bool unknown_field, uint32_t fields = kFields) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  ExampleBlock b;
  for (size_t r = 0; r < n; ++r) {
    std::vector<Feature> feats;
    for (uint32_t f = 0; f < fields; ++f) {
      if (r % 7 == 3 && f == 2) continue;  // absent field
      const uint32_t idx = f * kIndicesPerField + uint32_t(rng() % kIndicesPerField);
      feats.push_back({f, idx, r % 2 ? 1.0f : 0.25f + u(rng)});
    }
    if (r % 11 == 5) feats.push_back({0, feats[0].index + 1, 0.5f});  // two features in field 0
    if (r % 13 == 6) feats.back().index = feats.front().index;        // one index in two fields
    if (unknown_field && r % 17 == 8) feats.push_back({fields + 1, 3, 1.0f});
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

// Two epochs over 300 rows (of spec.num_fields fields), one row per TrainStep.
inline void Train(const ModelSpec& spec, bool use_weights, bool fused, const OptimizerConfig& c, bool unknown_field,
                  Trained* out) {
  out->store.state = StateCount(c.type);
  out->store.slot_state = SlotStateCount(c.type);
  auto net = Network::Build(spec, &out->store, use_weights, 7);
  ASSERT_TRUE(net.ok()) << net.status().ToString();
  for (auto& [name, t] : out->store.sparse) InitState(c, &t);
  for (auto& [name, p] : out->store.dense) InitState(c, &p);
  (*net)->set_fused(fused);
  const ExampleBlock data = Rows(300, 5, unknown_field, spec.num_fields);
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

// An inference store for a built network: weights only (deterministic
// values), a bias, every third index unseen, and unseen field vectors.
inline void FillForInference(ParamStore* store) {
  store->dense.at("bias").w[0] = 0.2f;
  store->known.assign(store->num_indices, 1);
  for (uint32_t i = 0; i < store->num_indices; i += 3) store->known[i] = 0;
  for (auto& [name, t] : store->sparse) {
    for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = 0.3f * std::sin(float(i) * 1.7f);
    t.unseen.resize(size_t(store->num_fields) * t.slots * t.k);
    for (size_t i = 0; i < t.unseen.size(); ++i) t.unseen[i] = 0.2f * std::cos(float(i));
  }
}

// Predicts `data` with the fused kernels off, then on: the same floats.
inline void ExpectFusedPredictSameAsGraph(Network& net, const ParamStore& store, const ExampleBlock& data) {
  std::vector<float> generic(data.rows()), fused(data.rows());
  net.set_fused(false);
  net.Predict(store, data.view(), generic);
  net.set_fused(true);
  net.Predict(store, data.view(), fused);
  EXPECT_EQ(0, std::memcmp(generic.data(), fused.data(), generic.size() * sizeof(float)));
  EXPECT_NE(generic[0], generic[1]);
}

inline void ExpectSameBytes(const ParamStore& a, const ParamStore& b) {
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
    if (!p.s1.empty()) {
      EXPECT_EQ(0, std::memcmp(p.s1.data(), q.s1.data(), p.s1.size() * sizeof(float))) << name;
    }
  }
}

}  // namespace fieldfm::testing
