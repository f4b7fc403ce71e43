#include "data/field_map.h"

#include <algorithm>
#include <sstream>

#include "data/parse_util.h"
#include "util/atomic_file.h"

namespace fieldfm::data {

Result<FieldMap> FieldMap::FromRanges(std::vector<FieldRange> ranges) {
  if (ranges.empty()) return Status::InvalidArgument("field map has no ranges");
  uint64_t top = 0;
  for (const auto& r : ranges) {
    if (r.lo > r.hi) return Status::InvalidArgument("field map: range of '" + r.name + "' has lo > hi");
    top = std::max<uint64_t>(top, uint64_t{r.hi} + 1);
  }
  if (top > (uint64_t{1} << 28)) return Status::InvalidArgument("field map: ranges reach beyond 2^28 ids");
  FieldMap m;
  m.dense_.assign(top, -1);
  for (size_t f = 0; f < ranges.size(); ++f) {
    for (uint64_t i = ranges[f].lo; i <= ranges[f].hi; ++i) {
      if (m.dense_[i] >= 0) {
        return Status::InvalidArgument("field map: ranges of '" + ranges[m.dense_[i]].name + "' and '" +
                                       ranges[f].name + "' overlap at " + std::to_string(i));
      }
      m.dense_[i] = static_cast<int32_t>(f);
    }
  }
  m.ranges_ = std::move(ranges);
  return m;
}

Result<FieldMap> FieldMap::FromJsonValue(const nlohmann::json& j) {
  if (!j.is_array()) return Status::InvalidArgument("field map: expected an array of {name, lo, hi}");
  std::vector<FieldRange> ranges;
  for (const auto& e : j) {
    if (!e.is_object() || !e.contains("name") || !e["name"].is_string() || !e.contains("lo") ||
        !e["lo"].is_number_unsigned() || !e.contains("hi") || !e["hi"].is_number_unsigned() ||
        e["lo"].get<uint64_t>() > UINT32_MAX || e["hi"].get<uint64_t>() > UINT32_MAX) {
      return Status::InvalidArgument("field map: each entry needs \"name\" (string), \"lo\" and \"hi\" (ids)");
    }
    ranges.push_back({e["name"].get<std::string>(), e["lo"].get<uint32_t>(), e["hi"].get<uint32_t>()});
  }
  return FromRanges(std::move(ranges));
}

nlohmann::json FieldMap::ToJsonValue() const {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& r : ranges_) j.push_back({{"name", r.name}, {"lo", r.lo}, {"hi", r.hi}});
  return j;
}

Result<FieldMap> FieldMap::FromFile(const std::string& path) {
  FIELDFM_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && (text[first] == '[' || text[first] == '{')) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) return Status::InvalidArgument(path + ": not valid JSON");
    if (j.is_object() && j.contains("fields")) j = j["fields"];
    auto m = FromJsonValue(j);
    if (!m.ok()) return m.status().WithContext(path);
    return m;
  }
  std::vector<FieldRange> ranges;
  std::istringstream in(text);
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    std::string_view l = StripCr(line);
    size_t hash = l.find('#');
    if (hash != std::string_view::npos) l = l.substr(0, hash);
    if (IsBlank(l)) continue;
    std::istringstream ls{std::string(l)};
    std::string name, lo, hi, extra;
    ls >> name >> lo >> hi;
    FieldRange r;
    r.name = name;
    if (hi.empty() || (ls >> extra) || ParseU32(lo, &r.lo) != NumStatus::kOk ||
        ParseU32(hi, &r.hi) != NumStatus::kOk) {
      return Status::InvalidArgument(path + ":" + std::to_string(line_no) +
                                     ": expected 'name lo hi' " + QuoteToken(l));
    }
    ranges.push_back(std::move(r));
  }
  auto m = FromRanges(std::move(ranges));
  if (!m.ok()) return m.status().WithContext(path);
  return m;
}

}  // namespace fieldfm::data
