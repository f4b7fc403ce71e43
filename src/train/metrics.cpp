#include "train/metrics.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace fieldfm {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kEps = 1e-15;

double BinaryEntropy(double p) {
  if (p <= 0 || p >= 1) return 0;
  return -(p * std::log(p) + (1 - p) * std::log(1 - p));
}
}  // namespace

double WeightedAuc(std::span<const float> pred, std::span<const float> label, std::span<const float> weight) {
  const size_t n = pred.size();
  // A NaN score (a diverged model) has no rank: sorting it is undefined and
  // the tie walk below would never pass it.
  if (std::any_of(pred.begin(), pred.end(), [](float p) { return std::isnan(p); })) return kNaN;
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return pred[a] < pred[b]; });
  // Walk groups of tied scores in increasing order: each positive in a group
  // beats all negatives below it and half of the negatives tied with it.
  double neg_below = 0, pairs = 0, pos_total = 0, neg_total = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    double pos = 0, neg = 0;
    while (j < n && pred[order[j]] == pred[order[i]]) {
      double w = weight.empty() ? 1.0 : weight[order[j]];
      double y = std::clamp<double>(label[order[j]], 0.0, 1.0);
      pos += w * y;
      neg += w * (1 - y);
      ++j;
    }
    pairs += pos * (neg_below + 0.5 * neg);
    neg_below += neg;
    pos_total += pos;
    neg_total += neg;
    i = j;
  }
  if (pos_total <= 0 || neg_total <= 0) return kNaN;
  return pairs / (pos_total * neg_total);
}

Metrics ComputeMetrics(std::span<const float> pred, std::span<const float> label, std::span<const float> weight,
                       Task task) {
  assert(pred.size() == label.size());
  assert(weight.empty() || weight.size() == pred.size());
  Metrics m;
  m.rows = pred.size();
  double wsum = 0, sq = 0, wsq = 0, ll = 0, wp = 0, wy = 0;
  for (size_t i = 0; i < pred.size(); ++i) {
    const double w = weight.empty() ? 1.0 : weight[i];
    const double p = pred[i], y = label[i];
    wsum += w;
    sq += (p - y) * (p - y);
    wsq += w * (p - y) * (p - y);
    wp += w * p;
    wy += w * y;
    if (task == Task::kClassification) {
      const double pc = std::clamp(p, kEps, 1 - kEps);
      ll -= w * (y * std::log(pc) + (1 - y) * std::log(1 - pc));
    }
  }
  m.weight_sum = wsum;
  if (m.rows == 0 || wsum <= 0) {
    m.logloss = m.auc = m.rmse = m.weighted_rmse = m.ne = m.calibration = kNaN;
    return m;
  }
  m.rmse = std::sqrt(sq / m.rows);
  m.weighted_rmse = std::sqrt(wsq / wsum);
  m.calibration = wy != 0 ? wp / wy : kNaN;
  if (task == Task::kClassification) {
    m.logloss = ll / wsum;
    const double h = BinaryEntropy(wy / wsum);
    m.ne = h > 0 ? m.logloss / h : kNaN;
    m.auc = WeightedAuc(pred, label, weight);
  } else {
    m.logloss = m.ne = m.auc = kNaN;
  }
  return m;
}

}  // namespace fieldfm
