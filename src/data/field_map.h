// libsvm/libFM index ranges -> fields, e.g. for Frappe: "user 0 956".
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "fieldfm/status.h"

namespace fieldfm::data {

struct FieldRange {
  std::string name;
  uint32_t lo = 0, hi = 0;  // inclusive
};

class FieldMap {
 public:
  // Text ("name lo hi" per line, '#' comments) or JSON ([{"name","lo","hi"}, ...]).
  static Result<FieldMap> FromFile(const std::string& path);
  static Result<FieldMap> FromRanges(std::vector<FieldRange> ranges);
  static Result<FieldMap> FromJsonValue(const nlohmann::json& j);
  nlohmann::json ToJsonValue() const;

  // Field of `index`, or -1 when no range covers it.
  int64_t FieldOf(uint32_t index) const {
    if (index < dense_.size()) return dense_[index];
    return -1;
  }
  const std::vector<FieldRange>& ranges() const { return ranges_; }
  uint32_t num_fields() const { return static_cast<uint32_t>(ranges_.size()); }
  uint64_t index_space() const { return dense_.size(); }

 private:
  std::vector<FieldRange> ranges_;
  std::vector<int32_t> dense_;  // index -> field (-1 = gap); ranges are small in practice
};

}  // namespace fieldfm::data
