#include "data/line_parsers.h"

#include <algorithm>
#include <cstring>

#include "data/parse_util.h"

namespace fieldfm::data {

void ChunkParser::Parse(const Chunk& chunk, ParsedChunk* out) const {
  out->block.clear();
  out->bad_lines = 0;
  out->errors.clear();
  out->fatal = Status::Ok();
  out->bytes = chunk.text.size();
  std::string err;
  ExampleBlock& b = out->block;
  const char* p = chunk.text.data();
  const char* end = p + chunk.text.size();
  uint64_t line_no = chunk.first_line;
  for (; p < end; ++line_no) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
    if (nl == nullptr) nl = end;
    std::string_view line = StripCr(std::string_view(p, static_cast<size_t>(nl - p)));
    p = nl + 1;
    if (IsBlank(line)) continue;  // blank lines (e.g. a trailing one) carry no example
    const size_t mark = b.features.size();
    float label = 0, weight = 1;
    if (ParseLine(line, &label, &weight, &b.features, &err)) {
      b.labels.push_back(label);
      b.weights.push_back(weight);
      b.offsets.push_back(b.features.size());
      continue;
    }
    b.features.resize(mark);
    std::string msg = path_ + ":" + std::to_string(line_no) + ": " + err;
    if (!read_.skip_bad_lines) {
      out->fatal = Status::DataError(std::move(msg));
      return;
    }
    ++out->bad_lines;
    if (out->errors.size() < read_.max_reported_errors) out->errors.push_back(std::move(msg));
  }
  uint32_t max_field = 0;
  uint32_t max_index = 0;
  for (const Feature& f : b.features) {
    max_field = std::max(max_field, f.field);
    max_index = std::max(max_index, f.index);
  }
  out->max_field = b.features.empty() ? 0 : max_field + 1;
  out->max_index = b.features.empty() ? 0 : uint64_t{max_index} + 1;
}

namespace {

inline bool IsSpace(char c) { return c == ' ' || c == '\t'; }

bool Fail(std::string* err, const char* what, std::string_view token) {
  *err = what;
  err->push_back(' ');
  err->append(QuoteToken(token));
  return false;
}

bool ParseId(std::string_view s, std::string_view token, const char* kind, uint32_t* out, std::string* err) {
  switch (ParseU32(s, out)) {
    case NumStatus::kOk:
      return true;
    case NumStatus::kOverflow:
      *err = std::string(kind) + " out of range";
      break;
    default:
      *err = std::string("invalid ") + kind;
      break;
  }
  err->push_back(' ');
  err->append(QuoteToken(token));
  return false;
}

}  // namespace

bool ParseSparseLine(std::string_view line, bool with_fields, const FieldMap* field_map, bool map_minus_one,
                     bool has_label, float* label, float* weight, std::vector<Feature>* out, std::string* err) {
  const char* p = line.data();
  const char* end = p + line.size();
  while (p < end && IsSpace(*p)) ++p;
  if (has_label) {
    const char* t = p;
    const char* colon = nullptr;
    while (p < end && !IsSpace(*p)) {
      if (*p == ':' && colon == nullptr) colon = p;
      ++p;
    }
    std::string_view token(t, static_cast<size_t>(p - t));
    std::string_view lab = colon ? std::string_view(t, static_cast<size_t>(colon - t)) : token;
    if (ParseFloat(lab, label) != NumStatus::kOk) return Fail(err, "invalid label", token);
    if (map_minus_one && *label == -1.0f) *label = 0.0f;
    *weight = 1.0f;
    if (colon != nullptr) {
      std::string_view w(colon + 1, static_cast<size_t>(p - colon - 1));
      if (ParseFloat(w, weight) != NumStatus::kOk || *weight < 0) return Fail(err, "invalid weight", token);
    }
  }
  const int want_colons = with_fields ? 2 : 1;
  for (;;) {
    while (p < end && IsSpace(*p)) ++p;
    if (p >= end) break;
    const char* t = p;
    const char* colons[3] = {nullptr, nullptr, nullptr};
    int n_colons = 0;
    while (p < end && !IsSpace(*p)) {
      if (*p == ':') {
        if (n_colons < 3) colons[n_colons] = p;
        ++n_colons;
      }
      ++p;
    }
    std::string_view token(t, static_cast<size_t>(p - t));
    if (n_colons < want_colons) return Fail(err, "missing ':' in feature", token);
    if (n_colons > want_colons) return Fail(err, "too many ':' in feature", token);
    Feature f;
    const char* idx_begin = t;
    if (with_fields) {
      if (!ParseId(std::string_view(t, static_cast<size_t>(colons[0] - t)), token, "field id", &f.field, err)) {
        return false;
      }
      idx_begin = colons[0] + 1;
    }
    const char* idx_end = colons[want_colons - 1];
    if (!ParseId(std::string_view(idx_begin, static_cast<size_t>(idx_end - idx_begin)), token, "feature index",
                 &f.index, err)) {
      return false;
    }
    switch (ParseFloat(std::string_view(idx_end + 1, static_cast<size_t>(p - idx_end - 1)), &f.value)) {
      case NumStatus::kOk:
        break;
      case NumStatus::kNonFinite:
        return Fail(err, "non-finite feature value", token);
      default:
        return Fail(err, "invalid feature value", token);
    }
    if (!with_fields) {
      if (field_map != nullptr) {
        int64_t field = field_map->FieldOf(f.index);
        if (field < 0) return Fail(err, "feature index not covered by the field map", token);
        f.field = static_cast<uint32_t>(field);
      } else {
        f.field = f.index;
      }
    }
    out->push_back(f);
  }
  return true;
}

namespace {
// Per-thread scratch, so parsing a line allocates nothing once warmed up.
thread_local std::vector<std::string_view> cells;
thread_local std::vector<std::string_view> mapped;
thread_local std::string scratch;
}  // namespace

const std::string_view* CsvChunkParser::LastCells() const { return mapped.data(); }

bool CsvChunkParser::ParseLine(std::string_view line, float* label, float* weight, std::vector<Feature>* out,
                               std::string* err) const {
  if (!SplitCells(line, delim_, &cells, &scratch)) {
    *err = "unterminated or misplaced quote " + QuoteToken(line);
    return false;
  }
  if (cells.size() != file_columns_) {
    *err = "expected " + std::to_string(file_columns_) + " columns, found " + std::to_string(cells.size()) + " " +
           QuoteToken(line);
    return false;
  }
  mapped.resize(schema_to_file_.size());
  for (size_t j = 0; j < schema_to_file_.size(); ++j) {
    int col = schema_to_file_[j];
    mapped[j] = col >= 0 ? cells[static_cast<size_t>(col)] : std::string_view();
  }
  const int label_col = schema_->label_column();
  const bool has_label = label_col >= 0 && schema_to_file_[static_cast<size_t>(label_col)] >= 0;
  return schema_->EncodeRow(mapped.data(), label, weight, out, err, has_label);
}

Status MapHeader(const Schema& schema, std::string_view header, char delim, std::vector<int>* schema_to_file,
                 size_t* file_columns) {
  std::vector<std::string_view> cells;
  std::string scratch;
  std::string_view h = StripCr(header);
  // A UTF-8 byte order mark would glue itself to the first column name.
  if (h.size() >= 3 && h.substr(0, 3) == "\xEF\xBB\xBF") h.remove_prefix(3);
  if (!SplitCells(h, delim, &cells, &scratch)) {
    return Status::DataError("header: unterminated quote " + QuoteToken(header));
  }
  schema_to_file->assign(schema.columns.size(), -1);
  for (size_t i = 0; i < cells.size(); ++i) {
    auto it = std::find_if(schema.columns.begin(), schema.columns.end(),
                           [&](const ColumnSpec& c) { return c.name == cells[i]; });
    if (it == schema.columns.end()) {
      if (schema.ignore_unknown_columns) continue;
      return Status::DataError("header: column '" + std::string(cells[i]) +
                               "' is not in the schema (add it, e.g. with type \"ignore\", or set "
                               "ignore_unknown_columns = true)");
    }
    int& slot = (*schema_to_file)[static_cast<size_t>(it - schema.columns.begin())];
    if (slot >= 0) return Status::DataError("header: column '" + std::string(cells[i]) + "' appears twice");
    slot = static_cast<int>(i);
  }
  for (size_t j = 0; j < schema.columns.size(); ++j) {
    // A file without the label (or weight) column is fine: rows to predict on.
    const ColumnType t = schema.columns[j].type;
    if ((*schema_to_file)[j] < 0 && t != ColumnType::kIgnore && t != ColumnType::kLabel && t != ColumnType::kWeight) {
      return Status::DataError("header: schema column '" + schema.columns[j].name + "' is missing " +
                               QuoteToken(header));
    }
  }
  *file_columns = cells.size();
  return Status::Ok();
}

}  // namespace fieldfm::data
