#include "data/schema.h"

#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <sstream>

#include "data/hashing.h"
#include "data/parse_util.h"
#include "util/atomic_file.h"

namespace fieldfm::data {
namespace {

using nlohmann::json;

template <typename E>
struct NamedEnum {
  const char* name;
  E value;
};

constexpr NamedEnum<ColumnType> kTypes[] = {
    {"label", ColumnType::kLabel},           {"weight", ColumnType::kWeight},
    {"ignore", ColumnType::kIgnore},         {"categorical", ColumnType::kCategorical},
    {"numeric", ColumnType::kNumeric},       {"hour_yymmddhh", ColumnType::kHour}};
constexpr NamedEnum<Encoding> kEncodings[] = {{"hash", Encoding::kHash}, {"vocab", Encoding::kVocab}};
constexpr NamedEnum<Transform> kTransforms[] = {{"none", Transform::kNone},
                                                {"log", Transform::kLog},
                                                {"log2_bucket", Transform::kLog2Bucket},
                                                {"quantile", Transform::kQuantile},
                                                {"hybrid", Transform::kHybrid}};

template <typename E, size_t N>
const char* EnumName(const NamedEnum<E> (&table)[N], E v) {
  for (const auto& e : table) {
    if (e.value == v) return e.name;
  }
  return "?";
}

template <typename E, size_t N>
bool EnumFromName(const NamedEnum<E> (&table)[N], const std::string& name, E* out) {
  for (const auto& e : table) {
    if (name == e.name) {
      *out = e.value;
      return true;
    }
  }
  return false;
}

Status SchemaError(const std::string& what) { return Status::InvalidArgument("schema: " + what); }

bool IsFeatureColumn(const ColumnSpec& c) {
  return c.type == ColumnType::kCategorical || c.type == ColumnType::kNumeric || c.type == ColumnType::kHour;
}

// Size of a column's dense (non-hashed) index range.
uint64_t DenseSize(const ColumnSpec& c) {
  switch (c.type) {
    case ColumnType::kCategorical:
      return c.encoding == Encoding::kVocab ? 1 + c.vocab.size() : 0;
    case ColumnType::kNumeric:
      switch (c.transform) {
        case Transform::kNone:
        case Transform::kLog:
          return 1;
        case Transform::kLog2Bucket:
          return 0;
        case Transform::kQuantile:
          return c.bins;
        case Transform::kHybrid:
          return uint64_t{c.bins} + 1;
      }
      return 0;
    case ColumnType::kHour:
      return 24 + 7;
    default:
      return 0;
  }
}

bool UsesHashing(const ColumnSpec& c) {
  return (c.type == ColumnType::kCategorical && c.encoding == Encoding::kHash) ||
         (c.type == ColumnType::kNumeric && c.transform == Transform::kLog2Bucket);
}

Result<ColumnSpec> ColumnFromJson(const json& j, bool with_state) {
  if (!j.is_object()) return SchemaError("each column must be a table/object");
  ColumnSpec c;
  auto name_it = j.find("name");
  if (name_it == j.end() || !name_it->is_string() || name_it->get<std::string>().empty()) {
    return SchemaError("a column has no \"name\"");
  }
  c.name = name_it->get<std::string>();
  const std::string where = "column '" + c.name + "': ";
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    auto need_string = [&]() -> Result<std::string> {
      if (!v.is_string()) return SchemaError(where + "\"" + key + "\" must be a string");
      return v.get<std::string>();
    };
    auto need_uint = [&]() -> Result<uint32_t> {
      if (!v.is_number_unsigned() || v.get<uint64_t>() > UINT32_MAX) {
        return SchemaError(where + "\"" + key + "\" must be a non-negative integer");
      }
      return v.get<uint32_t>();
    };
    if (key == "name") continue;
    if (key == "type") {
      FIELDFM_ASSIGN_OR_RETURN(std::string s, need_string());
      if (!EnumFromName(kTypes, s, &c.type)) return SchemaError(where + "unknown type '" + s + "'");
    } else if (key == "field") {
      FIELDFM_ASSIGN_OR_RETURN(c.field, need_string());
    } else if (key == "encoding") {
      FIELDFM_ASSIGN_OR_RETURN(std::string s, need_string());
      if (!EnumFromName(kEncodings, s, &c.encoding)) return SchemaError(where + "unknown encoding '" + s + "'");
    } else if (key == "transform") {
      FIELDFM_ASSIGN_OR_RETURN(std::string s, need_string());
      if (!EnumFromName(kTransforms, s, &c.transform)) return SchemaError(where + "unknown transform '" + s + "'");
    } else if (key == "min_count") {
      FIELDFM_ASSIGN_OR_RETURN(c.min_count, need_uint());
    } else if (key == "bins") {
      FIELDFM_ASSIGN_OR_RETURN(c.bins, need_uint());
    } else if (key == "delimiter") {
      FIELDFM_ASSIGN_OR_RETURN(c.multi_delimiter, need_string());
    } else if (key == "hour_field") {
      FIELDFM_ASSIGN_OR_RETURN(c.hour_field, need_string());
    } else if (key == "weekday_field") {
      FIELDFM_ASSIGN_OR_RETURN(c.weekday_field, need_string());
    } else if (with_state && key == "vocab") {
      if (!v.is_array()) return SchemaError(where + "\"vocab\" must be an array");
      for (const auto& s : v) {
        if (!s.is_string()) return SchemaError(where + "\"vocab\" entries must be strings");
        c.vocab.push_back(s.get<std::string>());
      }
    } else if (with_state && key == "edges") {
      if (!v.is_array()) return SchemaError(where + "\"edges\" must be an array");
      for (const auto& e : v) {
        if (!e.is_number()) return SchemaError(where + "\"edges\" entries must be numbers");
        c.edges.push_back(e.get<double>());
      }
    } else if (with_state && (key == "lo" || key == "hi")) {
      if (!v.is_number()) return SchemaError(where + "\"" + key + "\" must be a number");
      (key == "lo" ? c.lo : c.hi) = v.get<double>();
    } else {
      return SchemaError(where + "unknown key '" + key + "'");
    }
  }
  if (c.field.empty()) c.field = c.name;
  return c;
}

json ColumnToJson(const ColumnSpec& c) {
  json j = {{"name", c.name}, {"type", EnumName(kTypes, c.type)}};
  if (IsFeatureColumn(c) && c.type != ColumnType::kHour) j["field"] = c.field;
  if (c.type == ColumnType::kCategorical) {
    j["encoding"] = EnumName(kEncodings, c.encoding);
    if (c.encoding == Encoding::kVocab) {
      j["min_count"] = c.min_count;
      j["vocab"] = c.vocab;
    }
    if (!c.multi_delimiter.empty()) j["delimiter"] = c.multi_delimiter;
  } else if (c.type == ColumnType::kNumeric) {
    j["transform"] = EnumName(kTransforms, c.transform);
    if (c.transform == Transform::kQuantile || c.transform == Transform::kHybrid) {
      j["bins"] = c.bins;
      j["edges"] = c.edges;
    }
    if (c.transform == Transform::kHybrid) {
      j["lo"] = c.lo;
      j["hi"] = c.hi;
    }
  } else if (c.type == ColumnType::kHour) {
    j["hour_field"] = c.hour_field;
    j["weekday_field"] = c.weekday_field;
  }
  return j;
}

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

int64_t Log2Bucket(double v) {
  if (v > 2) {
    double l = std::log(v);
    return static_cast<int64_t>(std::floor(l * l));
  }
  return static_cast<int64_t>(std::floor(v));
}

int Weekday(int year, int month, int day) {
  // Days since 1970-01-01 (H. Hinnant's days_from_civil), which was a Thursday.
  year -= month <= 2;
  const int era = (year >= 0 ? year : year - 399) / 400;
  const int yoe = year - era * 400;
  const int doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const long days = static_cast<long>(era) * 146097 + doe - 719468;
  return static_cast<int>(((days + 3) % 7 + 7) % 7);
}

bool SplitCells(std::string_view line, char delim, std::vector<std::string_view>* cells,
                std::string* scratch) {
  cells->clear();
  scratch->clear();
  bool reserved = false;
  size_t i = 0;
  const size_t n = line.size();
  for (;;) {
    if (i < n && line[i] == '"') {
      // Quoted cell: copy out with "" -> " when needed.
      size_t start = ++i;
      bool escaped = false;
      for (;;) {
        const void* q = std::memchr(line.data() + i, '"', n - i);
        if (q == nullptr) return false;
        i = static_cast<size_t>(static_cast<const char*>(q) - line.data());
        if (i + 1 < n && line[i + 1] == '"') {
          escaped = true;
          i += 2;
          continue;
        }
        break;
      }
      std::string_view raw = line.substr(start, i - start);
      ++i;  // closing quote
      if (escaped) {
        if (!reserved) {
          scratch->reserve(n);  // views into scratch stay valid
          reserved = true;
        }
        size_t at = scratch->size();
        for (size_t k = 0; k < raw.size(); ++k) {
          scratch->push_back(raw[k]);
          if (raw[k] == '"') ++k;
        }
        cells->emplace_back(scratch->data() + at, scratch->size() - at);
      } else {
        cells->push_back(raw);
      }
      if (i >= n) break;
      if (line[i] != delim) return false;  // text after a closing quote
      ++i;
      continue;
    }
    const void* d = std::memchr(line.data() + i, delim, n - i);
    if (d == nullptr) {
      cells->push_back(line.substr(i));
      break;
    }
    size_t end = static_cast<size_t>(static_cast<const char*>(d) - line.data());
    cells->push_back(line.substr(i, end - i));
    i = end + 1;
  }
  return true;
}

Result<Schema> Schema::FromJsonValue(const json& j, bool with_state) {
  if (!j.is_object()) return SchemaError("the document must be a table/object");
  Schema s;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "header") {
      if (!v.is_boolean()) return SchemaError("\"header\" must be true or false");
      s.header = v.get<bool>();
    } else if (key == "delimiter") {
      if (!v.is_string() || v.get<std::string>().size() != 1) {
        return SchemaError("\"delimiter\" must be a one-character string");
      }
      s.delimiter = v.get<std::string>();
    } else if (key == "ignore_unknown_columns") {
      if (!v.is_boolean()) return SchemaError("\"ignore_unknown_columns\" must be true or false");
      s.ignore_unknown_columns = v.get<bool>();
    } else if (key == "columns") {
      if (!v.is_array()) return SchemaError("\"columns\" must be an array of tables");
      for (const auto& cj : v) {
        FIELDFM_ASSIGN_OR_RETURN(ColumnSpec c, ColumnFromJson(cj, with_state));
        s.columns.push_back(std::move(c));
      }
    } else if (with_state && key == "hash_bits" && v.is_number_integer()) {
      s.hash_bits = v.get<int>();
    } else if (with_state && key == "hash_seed" && v.is_number_unsigned()) {
      s.hash_seed = v.get<uint64_t>();
    } else if (with_state && key == "map_minus_one" && v.is_boolean()) {
      s.map_minus_one = v.get<bool>();
    } else if (with_state && key == "fitted" && v.is_boolean()) {
      s.fitted = v.get<bool>();
    } else {
      return SchemaError("unknown key '" + key + "'");
    }
  }
  if (s.columns.empty()) return SchemaError("no columns");
  return s;
}

json Schema::ToJsonValue() const {
  json cols = json::array();
  for (const auto& c : columns) cols.push_back(ColumnToJson(c));
  json j = {{"header", header},
            {"ignore_unknown_columns", ignore_unknown_columns},
            {"columns", std::move(cols)},
            {"hash_bits", hash_bits},
            {"hash_seed", hash_seed},
            {"map_minus_one", map_minus_one},
            {"fitted", fitted}};
  if (!delimiter.empty()) j["delimiter"] = delimiter;
  return j;
}

Result<Schema> Schema::FromFile(const std::string& path) {
  FIELDFM_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  json j;
  bool is_toml = path.size() >= 5 && path.compare(path.size() - 5, 5, ".toml") == 0;
  if (is_toml) {
    std::ostringstream os;
    try {
      toml::table parsed = toml::parse(text, path);
      os << toml::json_formatter{parsed};
    } catch (const toml::parse_error& err) {
      return Status::InvalidArgument(path + ":" + std::to_string(err.source().begin.line) + ": " +
                                     std::string(err.description()));
    }
    j = json::parse(os.str(), nullptr, false);
  } else {
    j = json::parse(text, nullptr, false);
    if (j.is_discarded()) return Status::InvalidArgument(path + ": not valid JSON");
  }
  auto s = FromJsonValue(j, /*with_state=*/false);
  if (!s.ok()) return s.status().WithContext(path);
  return s;
}

Result<Schema> Schema::Preset(std::string_view name) {
  Schema s;
  auto add = [&s](std::string col, ColumnType type) {
    ColumnSpec c;
    c.name = col;
    c.field = col;
    c.type = type;
    s.columns.push_back(std::move(c));
    return &s.columns.back();
  };
  if (name == "criteo") {
    // Raw Kaggle/Terabyte TSV: label, 13 counts, 26 hashed categoricals, no header.
    s.header = false;
    s.delimiter = "\t";
    add("label", ColumnType::kLabel);
    // (std::string(1, c) + ..., not "I" + ...: g++ 12 warns falsely on the latter.)
    for (int i = 1; i <= 13; ++i) {
      add(std::string(1, 'I') + std::to_string(i), ColumnType::kNumeric)->transform = Transform::kLog2Bucket;
    }
    for (int i = 1; i <= 26; ++i) add(std::string(1, 'C') + std::to_string(i), ColumnType::kCategorical);
    return s;
  }
  if (name == "avazu") {
    s.header = true;
    s.delimiter = ",";
    add("id", ColumnType::kIgnore);
    add("click", ColumnType::kLabel);
    add("hour", ColumnType::kHour);
    for (const char* col : {"C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id",
                            "app_domain", "app_category", "device_id", "device_ip", "device_model",
                            "device_type", "device_conn_type", "C14", "C15", "C16", "C17", "C18",
                            "C19", "C20", "C21"}) {
      add(col, ColumnType::kCategorical);
    }
    return s;
  }
  return Status::InvalidArgument("unknown preset '" + std::string(name) + "' (known: criteo, avazu)");
}

bool Schema::NeedsFit() const {
  for (const auto& c : columns) {
    if (c.type == ColumnType::kCategorical && c.encoding == Encoding::kVocab) return true;
    if (c.type == ColumnType::kNumeric &&
        (c.transform == Transform::kQuantile || c.transform == Transform::kHybrid)) {
      return true;
    }
  }
  return false;
}

Status Schema::Finalize() {
  if (hash_bits < 1 || hash_bits > 30) {
    return Status::InvalidArgument("hash_bits must be in [1, 30], got " + std::to_string(hash_bits));
  }
  fields_.clear();
  label_col_ = weight_col_ = -1;
  auto field_id = [this](const std::string& name) {
    auto it = std::find(fields_.begin(), fields_.end(), name);
    if (it != fields_.end()) return static_cast<uint32_t>(it - fields_.begin());
    fields_.push_back(name);
    return static_cast<uint32_t>(fields_.size() - 1);
  };
  bool any_hash = false;
  for (size_t i = 0; i < columns.size(); ++i) {
    ColumnSpec& c = columns[i];
    for (size_t k = 0; k < i; ++k) {
      if (columns[k].name == c.name) return SchemaError("column '" + c.name + "' is listed twice");
    }
    const std::string where = "column '" + c.name + "': ";
    if (c.type == ColumnType::kLabel) {
      if (label_col_ >= 0) return SchemaError("more than one label column");
      label_col_ = static_cast<int>(i);
    } else if (c.type == ColumnType::kWeight) {
      if (weight_col_ >= 0) return SchemaError("more than one weight column");
      weight_col_ = static_cast<int>(i);
    }
    if (c.multi_delimiter.size() > 1) return SchemaError(where + "\"delimiter\" must be one character");
    if ((c.transform == Transform::kQuantile || c.transform == Transform::kHybrid) && c.bins < 2) {
      return SchemaError(where + "\"bins\" must be at least 2");
    }
    if (c.min_count < 1) c.min_count = 1;
    if (c.type == ColumnType::kHour) {
      c.field_id = field_id(c.hour_field);
      c.field_id2 = field_id(c.weekday_field);
    } else if (IsFeatureColumn(c)) {
      c.field_id = field_id(c.field);
      c.field_seed = FieldHashSeed(hash_seed, c.field);
    }
    any_hash = any_hash || UsesHashing(c);
    c.vocab_ids.clear();
    for (size_t v = 0; v < c.vocab.size(); ++v) c.vocab_ids.emplace(c.vocab[v], static_cast<uint32_t>(v));
  }
  if (fields_.empty()) return SchemaError("no feature columns (categorical, numeric, hour_yymmddhh)");
  hashed_size_ = any_hash ? (uint64_t{1} << hash_bits) : 0;
  uint64_t next = hashed_size_;
  for (auto& c : columns) {
    c.base = static_cast<uint32_t>(std::min<uint64_t>(next, UINT32_MAX));
    next += DenseSize(c);
  }
  if (next > UINT32_MAX) return SchemaError("index space exceeds 2^32 (lower hash_bits or min_count)");
  index_space_ = next;
  return Status::Ok();
}

bool Schema::EncodeCategorical(const ColumnSpec& c, std::string_view v, std::vector<Feature>* out,
                               std::string* err) const {
  auto one = [&](std::string_view value) {
    if (value.empty()) return;
    uint32_t index;
    if (c.encoding == Encoding::kHash) {
      index = HashedIndex(value, c.field_seed, hash_bits);
    } else {
      auto it = c.vocab_ids.find(value);
      index = c.base + (it == c.vocab_ids.end() ? 0 : 1 + it->second);
    }
    out->push_back(Feature{c.field_id, index, 1.0f});
  };
  if (!IsValidUtf8(v)) {
    *err = "invalid UTF-8 in column '" + c.name + "' " + QuoteToken(v);
    return false;
  }
  if (c.multi_delimiter.empty()) {
    one(v);
    return true;
  }
  const char d = c.multi_delimiter[0];
  size_t start = 0;
  for (;;) {
    size_t end = v.find(d, start);
    one(v.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return true;
}

bool Schema::EncodeNumeric(const ColumnSpec& c, std::string_view v, std::vector<Feature>* out,
                           std::string* err) const {
  double x = 0;
  NumStatus st = ParseDouble(v, &x);
  if (st != NumStatus::kOk) {
    *err = std::string(st == NumStatus::kNonFinite ? "non-finite" : "invalid") + " number in column '" +
           c.name + "' " + QuoteToken(v);
    return false;
  }
  switch (c.transform) {
    case Transform::kNone:
      out->push_back(Feature{c.field_id, c.base, static_cast<float>(x)});
      break;
    case Transform::kLog:
      out->push_back(Feature{c.field_id, c.base, static_cast<float>(std::copysign(std::log1p(std::fabs(x)), x))});
      break;
    case Transform::kLog2Bucket: {
      char buf[24];
      auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), Log2Bucket(x));
      out->push_back(Feature{c.field_id, HashedIndex(std::string_view(buf, end - buf), c.field_seed, hash_bits), 1.0f});
      break;
    }
    case Transform::kQuantile:
    case Transform::kHybrid: {
      auto bin = static_cast<uint32_t>(std::upper_bound(c.edges.begin(), c.edges.end(), x) - c.edges.begin());
      out->push_back(Feature{c.field_id, c.base + std::min(bin, c.bins - 1), 1.0f});
      if (c.transform == Transform::kHybrid) {
        double norm = c.hi > c.lo ? std::clamp((x - c.lo) / (c.hi - c.lo), 0.0, 1.0) : 0.0;
        out->push_back(Feature{c.field_id, c.base + c.bins, static_cast<float>(norm)});
      }
      break;
    }
  }
  return true;
}

bool Schema::EncodeRow(const std::string_view* cells, float* label, float* weight,
                       std::vector<Feature>* out, std::string* err, bool need_label) const {
  *label = 0.0f;
  *weight = 1.0f;
  for (size_t i = 0; i < columns.size(); ++i) {
    const ColumnSpec& c = columns[i];
    std::string_view v = cells[i];
    if (!need_label && (c.type == ColumnType::kLabel || c.type == ColumnType::kWeight)) continue;
    switch (c.type) {
      case ColumnType::kIgnore:
        break;
      case ColumnType::kLabel: {
        double y = 0;
        NumStatus st = ParseDouble(v, &y);
        if (st != NumStatus::kOk) {
          *err = (v.empty() ? "missing label in column '" : "invalid label in column '") + c.name + "' " + QuoteToken(v);
          return false;
        }
        if (map_minus_one && y == -1.0) y = 0.0;
        *label = static_cast<float>(y);
        break;
      }
      case ColumnType::kWeight: {
        if (v.empty()) break;
        double w = 0;
        if (ParseDouble(v, &w) != NumStatus::kOk || w < 0) {
          *err = "invalid weight in column '" + c.name + "' " + QuoteToken(v);
          return false;
        }
        *weight = static_cast<float>(w);
        break;
      }
      case ColumnType::kCategorical:
        if (!v.empty() && !EncodeCategorical(c, v, out, err)) return false;
        break;
      case ColumnType::kNumeric:
        if (!v.empty() && !EncodeNumeric(c, v, out, err)) return false;
        break;
      case ColumnType::kHour: {
        if (v.empty()) break;
        uint32_t ymdh = 0;
        bool ok = v.size() == 8 && ParseU32(v, &ymdh) == NumStatus::kOk;
        int yy = ymdh / 1000000, mm = ymdh / 10000 % 100, dd = ymdh / 100 % 100, hh = ymdh % 100;
        if (!ok || mm < 1 || mm > 12 || dd < 1 || dd > 31 || hh > 23) {
          *err = "invalid YYMMDDHH hour in column '" + c.name + "' " + QuoteToken(v);
          return false;
        }
        out->push_back(Feature{c.field_id, c.base + static_cast<uint32_t>(hh), 1.0f});
        out->push_back(Feature{c.field_id2, c.base + 24 + static_cast<uint32_t>(Weekday(2000 + yy, mm, dd)), 1.0f});
        break;
      }
    }
  }
  return true;
}

struct FitAccumulator {
  std::vector<VocabIndex> counts;  // value -> count (uint32 saturating)
  std::vector<std::vector<double>> samples;
  std::vector<uint64_t> seen;
  std::vector<double> lo, hi;
  uint64_t rng = 0x5eed;
  std::vector<std::string_view> items;
};

constexpr size_t kMaxQuantileSample = 1 << 18;

FitAccumulator* Schema::NewAccumulator() const {
  auto* acc = new FitAccumulator;
  acc->counts.resize(columns.size());
  acc->samples.resize(columns.size());
  acc->seen.assign(columns.size(), 0);
  acc->lo.assign(columns.size(), HUGE_VAL);
  acc->hi.assign(columns.size(), -HUGE_VAL);
  return acc;
}

void Schema::DeleteAccumulator(FitAccumulator* acc) { delete acc; }

void Schema::Accumulate(FitAccumulator* acc, const std::string_view* cells) const {
  for (size_t i = 0; i < columns.size(); ++i) {
    const ColumnSpec& c = columns[i];
    std::string_view v = cells[i];
    if (v.empty()) continue;
    if (c.type == ColumnType::kCategorical && c.encoding == Encoding::kVocab) {
      auto count = [&](std::string_view item) {
        if (item.empty()) return;
        auto it = acc->counts[i].find(item);
        if (it == acc->counts[i].end()) {
          acc->counts[i].emplace(std::string(item), 1);
        } else if (it->second < UINT32_MAX) {
          ++it->second;
        }
      };
      if (c.multi_delimiter.empty()) {
        count(v);
      } else {
        size_t start = 0;
        for (;;) {
          size_t end = v.find(c.multi_delimiter[0], start);
          count(v.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
          if (end == std::string_view::npos) break;
          start = end + 1;
        }
      }
    } else if (c.type == ColumnType::kNumeric &&
               (c.transform == Transform::kQuantile || c.transform == Transform::kHybrid)) {
      double x;
      if (ParseDouble(v, &x) != NumStatus::kOk) continue;  // reading reports bad cells
      acc->lo[i] = std::min(acc->lo[i], x);
      acc->hi[i] = std::max(acc->hi[i], x);
      // Reservoir sample, so a file larger than memory still gets quantiles.
      uint64_t n = ++acc->seen[i];
      if (acc->samples[i].size() < kMaxQuantileSample) {
        acc->samples[i].push_back(x);
      } else {
        uint64_t k = SplitMix64(&acc->rng) % n;
        if (k < kMaxQuantileSample) acc->samples[i][k] = x;
      }
    }
  }
}

void Schema::FinishFit(FitAccumulator* acc) {
  for (size_t i = 0; i < columns.size(); ++i) {
    ColumnSpec& c = columns[i];
    if (c.type == ColumnType::kCategorical && c.encoding == Encoding::kVocab) {
      std::vector<std::pair<std::string, uint32_t>> kept;
      for (auto& [value, n] : acc->counts[i]) {
        if (n >= c.min_count) kept.emplace_back(value, n);
      }
      // Most frequent first; ties by value, so the result is deterministic.
      std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
      });
      c.vocab.clear();
      for (auto& kv : kept) c.vocab.push_back(std::move(kv.first));
    } else if (c.type == ColumnType::kNumeric &&
               (c.transform == Transform::kQuantile || c.transform == Transform::kHybrid)) {
      std::vector<double>& s = acc->samples[i];
      std::sort(s.begin(), s.end());
      c.edges.clear();
      for (uint32_t b = 1; b < c.bins && !s.empty(); ++b) {
        double e = s[s.size() * b / c.bins];
        if (c.edges.empty() || e > c.edges.back()) c.edges.push_back(e);
      }
      c.lo = s.empty() ? 0 : acc->lo[i];
      c.hi = s.empty() ? 0 : acc->hi[i];
    }
  }
  fitted = true;
}

}  // namespace fieldfm::data
