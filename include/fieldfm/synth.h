// Synthetic CTR-like data from a hidden ground-truth model, so every trainer
// can be scored against the Bayes-optimal logloss/AUC of the very rows it saw.
// Everything is a pure function of the options (byte-identical output per seed),
// and per-value parameters are hashed from (seed, field, id), never stored.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fieldfm/status.h"

namespace fieldfm {

enum class SynthFormat { kLibffm, kCsv };
enum class SynthTask { kClassification, kRegression };

struct SynthOptions {
  uint32_t fields = 39;
  uint32_t numeric = 13;             // the first `numeric` fields: binned counts
  uint64_t min_cardinality = 10;     // categorical cardinality ~ log-uniform in [min, max]
  uint64_t max_cardinality = 1000000;
  double zipf = 1.1;                 // value popularity exponent
  uint64_t rows = 100000;
  uint64_t test_rows = 0;
  uint64_t seed = 1;                 // fixes the hidden model and the rows
  uint32_t k = 4;                    // latent size of the hidden pairwise term
  SynthFormat format = SynthFormat::kLibffm;
  SynthTask task = SynthTask::kClassification;
  bool raw_numeric = false;          // CSV: also write the raw count of each numeric field
  uint32_t max_impressions = 1000;   // regression: impressions per row in [1, max]
  bool progress = false;             // progress lines on stderr
  uint32_t threads = 1;              // generator threads; output does not depend on it

  Status Validate() const;
};

// One generated row before labelling.
struct SynthRow {
  std::vector<uint32_t> ids;   // per field: value id in [0, cardinality(field))
  std::vector<uint64_t> raw;   // per numeric field: the count that was binned
};

// The hidden model: which rows are drawn and their true click probability.
class SynthModel {
 public:
  SynthModel(SynthModel&&) noexcept;
  SynthModel& operator=(SynthModel&&) noexcept;
  ~SynthModel();

  static Result<SynthModel> Create(const SynthOptions& options);

  const SynthOptions& options() const;
  uint32_t num_fields() const;
  bool is_numeric(uint32_t field) const;
  uint64_t cardinality(uint32_t field) const;
  // libffm feature index of (field, id) = field_offset(field) + id: fields never share an index.
  uint64_t field_offset(uint32_t field) const;
  uint64_t index_space() const;  // sum of cardinalities
  std::string field_name(uint32_t field) const;  // I1.. for numeric, C1.. for categorical

  // Row `row` of split `split` (0 train, 1 test); a pure function of (seed, split, row).
  void SampleRow(uint32_t split, uint64_t row, SynthRow* out) const;
  // True logit / probability of a row given its per-field value ids.
  double Logit(std::span<const uint32_t> ids) const;
  double TrueProbability(std::span<const uint32_t> ids) const;

  // Description of the hidden model (bias, active field pairs, scales) for the sidecar.
  nlohmann::json Describe() const;

 private:
  struct Impl;
  explicit SynthModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Figures over the rows written to one split.
struct SynthSplitStats {
  uint64_t rows = 0;
  double base_rate = 0;          // classification: mean label; regression: weighted mean rate
  double base_rate_logloss = 0;  // always predicting base_rate
  double bayes_logloss = 0;      // predicting the true probabilities (weighted for regression)
  double bayes_auc = 0;          // classification only
  double weight_sum = 0;         // regression: total impressions
  double bayes_rmse = 0;         // regression: weighted RMSE of true vs observed rates
  double base_rate_rmse = 0;     // regression: same, predicting base_rate
};

struct SynthResult {
  std::vector<std::string> files;  // data files then the JSON sidecar
  SynthSplitStats train, test;
  nlohmann::json sidecar;
};

// Writes PREFIX.train.<ext>, PREFIX.test.<ext> (test_rows > 0) and PREFIX.json, atomically.
Result<SynthResult> GenerateSynth(const SynthOptions& options, const std::string& prefix);

// Metrics shared with tests: mean logloss of probabilities vs 0/1 labels
// (probabilities clipped to [1e-15, 1 - 1e-15]) and the ROC AUC (ties count half).
double MeanLogloss(std::span<const double> probs, std::span<const float> labels);
double RocAuc(std::span<const double> probs, std::span<const float> labels);

}  // namespace fieldfm
