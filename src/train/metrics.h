// Evaluation metrics, exactly as ../shared/docs/models.md defines them.
#pragma once

#include <cstdint>
#include <span>

namespace fieldfm {

enum class Task { kClassification, kRegression };

struct Metrics {
  uint64_t rows = 0;
  double weight_sum = 0;
  double logloss = 0;        // weighted; p clipped to [1e-15, 1-1e-15]; NaN for regression
  double auc = 0;            // weighted, ties share their average rank; NaN for regression or one class
  double rmse = 0;           // unweighted sqrt(mean (pred - label)^2)
  double weighted_rmse = 0;  // sqrt(Σ w (pred - label)^2 / Σ w)
  double ne = 0;             // normalized entropy = logloss / entropy(base rate); NaN for regression
  double calibration = 0;    // Σ w p / Σ w y
};

// `weight` may be empty (all weights 1). For classification, labels in [0,1]
// (fractional labels count as that share of a positive: rate data works too).
Metrics ComputeMetrics(std::span<const float> pred, std::span<const float> label,
                       std::span<const float> weight, Task task);

// Weighted AUC alone (used by ComputeMetrics; exposed for tests and early stopping).
double WeightedAuc(std::span<const float> pred, std::span<const float> label, std::span<const float> weight);

}  // namespace fieldfm
