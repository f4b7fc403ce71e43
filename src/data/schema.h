// Column schemas for CSV/TSV input: what each column is, which field it feeds
// and how its cells become Features. Also holds the state Fit() learns
// (vocabularies, quantile edges), so a Schema is the whole CSV pipeline.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fieldfm/example.h"
#include "fieldfm/status.h"

namespace fieldfm::data {

enum class ColumnType { kLabel, kWeight, kIgnore, kCategorical, kNumeric, kHour };
enum class Encoding { kHash, kVocab };
enum class Transform { kNone, kLog, kLog2Bucket, kQuantile, kHybrid };

// Lets unordered_map<std::string, ...> be searched with a string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using VocabIndex = std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>>;

struct ColumnSpec {
  std::string name;
  ColumnType type = ColumnType::kCategorical;
  std::string field;             // field name (default: the column name)
  Encoding encoding = Encoding::kHash;
  uint32_t min_count = 1;        // vocab: rarer values go to the unknown bucket
  std::string multi_delimiter;   // categorical: one char splits a cell into values
  Transform transform = Transform::kNone;
  uint32_t bins = 16;            // quantile / hybrid
  std::string hour_field = "hour_of_day", weekday_field = "weekday";  // kHour

  // Learned by Fit().
  std::vector<std::string> vocab;  // id order
  std::vector<double> edges;       // ascending bin edges
  double lo = 0, hi = 0;           // hybrid: range for the normalized raw value

  // Derived by Schema::Finalize().
  uint32_t field_id = 0, field_id2 = 0;
  uint64_t field_seed = 0;
  uint32_t base = 0;  // first index of this column's dense range
  VocabIndex vocab_ids;
};

// Per-column values collected while fitting.
struct FitAccumulator;

class Schema {
 public:
  bool header = true;
  std::string delimiter;  // "" = from the input format (',' or '\t')
  bool ignore_unknown_columns = false;
  bool map_minus_one = true;  // label -1 -> 0
  int hash_bits = 22;
  uint64_t hash_seed = 0;
  bool fitted = false;
  std::vector<ColumnSpec> columns;

  // Parses a schema document (the "columns" list and options); file is .toml or .json.
  static Result<Schema> FromFile(const std::string& path);
  static Result<Schema> FromJsonValue(const nlohmann::json& j, bool with_state);
  static Result<Schema> Preset(std::string_view name);
  nlohmann::json ToJsonValue() const;

  // Validates and computes field ids, seeds and the index layout.
  Status Finalize();
  bool NeedsFit() const;

  const std::vector<std::string>& fields() const { return fields_; }
  uint64_t hashed_size() const { return hashed_size_; }
  uint64_t index_space() const { return index_space_; }
  int label_column() const { return label_col_; }
  int weight_column() const { return weight_col_; }

  // Encodes one row given the cell of every schema column (missing column or
  // empty cell = missing). Appends features; returns false with *err set.
  // need_label = false (serving) skips the label and weight columns.
  bool EncodeRow(const std::string_view* cells, float* label, float* weight,
                 std::vector<Feature>* out, std::string* err, bool need_label = true) const;

  // Fit support.
  FitAccumulator* NewAccumulator() const;
  void Accumulate(FitAccumulator* acc, const std::string_view* cells) const;
  void FinishFit(FitAccumulator* acc);
  static void DeleteAccumulator(FitAccumulator* acc);

 private:
  bool EncodeCategorical(const ColumnSpec& c, std::string_view v, std::vector<Feature>* out,
                         std::string* err) const;
  bool EncodeNumeric(const ColumnSpec& c, std::string_view v, std::vector<Feature>* out,
                     std::string* err) const;

  std::vector<std::string> fields_;
  uint64_t hashed_size_ = 0, index_space_ = 0;
  int label_col_ = -1, weight_col_ = -1;
};

// Splits a delimited line into cells, honoring "double quotes" (with ""
// escapes). Views point into `line` or into *scratch. False: unterminated quote.
bool SplitCells(std::string_view line, char delim, std::vector<std::string_view>* cells,
                std::string* scratch);

// Criteo winners' bucketing of counts: v > 2 ? floor(log(v)^2) : floor(v).
int64_t Log2Bucket(double v);

// Day of week (0 = Monday) of a proleptic Gregorian date.
int Weekday(int year, int month, int day);

}  // namespace fieldfm::data
