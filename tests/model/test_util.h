// Helpers shared by the model and train tests: random field-structured
// batches and a finite-difference gradient checker.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <vector>

#include "fieldfm/example.h"
#include "model/blocks.h"
#include "model/network.h"

namespace fieldfm::testing {

// `rows` examples over `fields` fields and `indices` ids. Field 0 is
// multi-valued (up to 3 features, values != 1) when `multi` is set; other
// fields get one feature of value 1 (or a random value when `multi`).
inline ExampleBlock RandomBlock(size_t rows, uint32_t fields, uint32_t indices, bool multi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  ExampleBlock b;
  const uint32_t per_field = std::max<uint32_t>(1, indices / fields);
  for (size_t r = 0; r < rows; ++r) {
    std::vector<Feature> feats;
    for (uint32_t f = 0; f < fields; ++f) {
      const int n = (multi && f == 0) ? 1 + int(rng() % 3) : 1;
      for (int i = 0; i < n; ++i) {
        const uint32_t idx = std::min(indices - 1, f * per_field + uint32_t(rng() % per_field));
        feats.push_back({f, idx, multi ? 0.5f + u(rng) : 1.0f});
      }
    }
    b.add(u(rng) < 0.4f ? 1.0f : 0.0f, 0.5f + 2 * u(rng), feats);
  }
  return b;
}

// Central differences of f around *x; restores *x.
inline double NumericGrad(float* x, const std::function<double()>& f, float eps) {
  const float saved = *x;
  *x = saved + eps;
  const double up = f();
  *x = saved - eps;
  const double down = f();
  *x = saved;
  return (up - down) / (2.0 * double(eps));
}

inline void ExpectClose(double analytic, double numeric, const std::string& what, double tol = 2e-3) {
  EXPECT_NEAR(analytic, numeric, tol * std::max(1.0, std::fabs(numeric))) << what;
}

// Sums duplicate entries of a sparse gradient per row.
inline std::map<uint64_t, std::vector<double>> Aggregate(const SparseGrad& g) {
  std::map<uint64_t, std::vector<double>> out;
  for (size_t e = 0; e < g.rows.size(); ++e) {
    auto& v = out[g.rows[e]];
    v.resize(g.width, 0.0);
    for (uint32_t d = 0; d < g.width; ++d) v[d] += g.values[e * g.width + d];
  }
  return out;
}

// Checks every accumulated parameter gradient of `dense`/`sparse` against
// central differences of `loss` (at most `max_per_param` coordinates each).
inline void CheckParamGrads(const std::vector<DenseGradRef>& dense, const std::vector<SparseGradRef>& sparse,
                            const std::function<double()>& loss, float eps, size_t max_per_param = 64,
                            double tol = 2e-3) {
  for (const auto& d : dense) {
    if (!d.param->trainable) continue;
    const size_t n = d.param->w.size(), step = std::max<size_t>(1, n / max_per_param);
    const FloatVec grad = *d.grad;
    for (size_t i = 0; i < n; i += step)
      ExpectClose(grad[i], NumericGrad(&d.param->w[i], loss, eps), d.name + "[" + std::to_string(i) + "]", tol);
  }
  for (const auto& s : sparse) {
    const auto agg = Aggregate(*s.grad);
    ASSERT_FALSE(agg.empty()) << s.name;
    size_t checked = 0;
    for (const auto& [row, g] : agg) {
      for (uint32_t slot = 0; slot < s.table->slots; ++slot)
        for (uint32_t d = 0; d < s.table->k; ++d) {
          if (checked++ > max_per_param * 4) return;
          float* w = s.table->row(row) + slot * s.table->slot_stride() + d;
          ExpectClose(g[slot * s.table->k + d], NumericGrad(w, loss, eps),
                      s.name + " row " + std::to_string(row) + " slot " + std::to_string(slot), tol);
        }
    }
  }
}

}  // namespace fieldfm::testing
