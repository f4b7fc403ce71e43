// A field-structured problem with a known answer: labels drawn from a hidden
// FFM-like logistic model, so the Bayes logloss is computable from the true
// probabilities.
#pragma once

#include <cmath>
#include <random>
#include <vector>

#include "fieldfm/example.h"

namespace fieldfm::testing {

struct Synthetic {
  ExampleBlock data;
  std::vector<double> truth;  // true probability of each row
  double BayesLogloss() const {
    double s = 0;
    for (size_t r = 0; r < truth.size(); ++r) {
      const double p = truth[r], y = data.labels[r];
      s -= y * std::log(p) + (1 - y) * std::log(1 - p);
    }
    return s / double(truth.size());
  }
  double BaseRateLogloss() const {
    double pos = 0;
    for (float y : data.labels) pos += y;
    const double p = pos / double(data.rows());
    return -(p * std::log(p) + (1 - p) * std::log(1 - p));
  }
};

// `fields` fields with `values` values each (global ids field*values + v),
// one feature per field. The hidden model has a bias, linear weights and
// latent vectors of dimension 2: v_{j,g} = u_j + field_aware * r_{j,g}, a
// shared part every FM-family model can learn plus a field-aware part.
// `model_seed` fixes the model, `seed` the rows: train and test share one model.
inline Synthetic MakeSynthetic(size_t rows, uint32_t fields, uint32_t values, uint64_t model_seed, uint64_t seed,
                               double field_aware = 0.5) {
  std::mt19937_64 mr(model_seed);
  std::normal_distribution<double> n(0.0, 1.0);
  const int k = 2;
  std::vector<double> w(size_t(fields) * values), v(size_t(fields) * values * fields * k);
  for (double& x : w) x = 0.7 * n(mr);
  std::vector<double> shared(size_t(fields) * values * k);
  for (double& x : shared) x = 0.4 * n(mr);
  for (size_t j = 0; j < size_t(fields) * values; ++j)
    for (uint32_t g = 0; g < fields; ++g)
      for (int d = 0; d < k; ++d) v[(j * fields + g) * k + d] = shared[j * k + d] + field_aware * 0.4 * n(mr);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Synthetic s;
  std::vector<uint32_t> ids(fields);
  std::vector<Feature> feats(fields);
  for (size_t r = 0; r < rows; ++r) {
    double phi = -0.8;
    for (uint32_t f = 0; f < fields; ++f) {
      // Skewed value frequencies, as in click logs.
      const uint32_t val = uint32_t(std::floor(values * std::pow(u(rng), 1.6)));
      ids[f] = f * values + std::min(val, values - 1);
      feats[f] = Feature{f, ids[f], 1.0f};
      phi += w[ids[f]];
    }
    for (uint32_t f = 0; f < fields; ++f)
      for (uint32_t g = f + 1; g < fields; ++g)
        for (int d = 0; d < k; ++d)
          phi += v[(size_t(ids[f]) * fields + g) * k + d] * v[(size_t(ids[g]) * fields + f) * k + d];
    const double p = 1.0 / (1.0 + std::exp(-phi));
    s.truth.push_back(p);
    s.data.add(u(rng) < p ? 1.0f : 0.0f, 1.0f, feats);
  }
  return s;
}

}  // namespace fieldfm::testing
