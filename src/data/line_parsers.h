// Per-format parsing of chunks of lines into examples. Parsers are immutable
// after construction, so one parser serves every worker thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/chunk_reader.h"
#include "data/field_map.h"
#include "data/schema.h"
#include "fieldfm/example.h"
#include "fieldfm/source.h"
#include "fieldfm/status.h"

namespace fieldfm::data {

struct ParsedChunk {
  ExampleBlock block;
  uint64_t bad_lines = 0;
  std::vector<std::string> errors;  // "path:line: problem (token)", at most max_reported_errors
  Status fatal;                     // first error when bad lines are not skipped
  uint32_t max_field = 0;           // largest field + 1
  uint64_t max_index = 0;           // largest index + 1
  uint64_t bytes = 0;               // size of the chunk's text
};

class ChunkParser {
 public:
  ChunkParser(std::string path, ReadOptions read) : path_(std::move(path)), read_(read) {}
  virtual ~ChunkParser() = default;
  void Parse(const Chunk& chunk, ParsedChunk* out) const;

  // One line (no line ending). Appends features; false with *err on bad input.
  virtual bool ParseLine(std::string_view line, float* label, float* weight, std::vector<Feature>* out,
                         std::string* err) const = 0;

 protected:
  std::string path_;
  ReadOptions read_;
};

// libffm "label[:weight] field:index:value ..." (with_fields) or libsvm/libFM
// "label[:weight] index:value ..." (fields from `field_map`, else field = index).
// has_label = false parses bare feature tokens (serving).
bool ParseSparseLine(std::string_view line, bool with_fields, const FieldMap* field_map, bool map_minus_one,
                     bool has_label, float* label, float* weight, std::vector<Feature>* out, std::string* err);

class SparseChunkParser : public ChunkParser {
 public:
  SparseChunkParser(std::string path, ReadOptions read, bool with_fields, const FieldMap* field_map,
                    bool map_minus_one)
      : ChunkParser(std::move(path), read), with_fields_(with_fields), field_map_(field_map),
        map_minus_one_(map_minus_one) {}
  bool ParseLine(std::string_view line, float* label, float* weight, std::vector<Feature>* out,
                 std::string* err) const override {
    return ParseSparseLine(line, with_fields_, field_map_, map_minus_one_, true, label, weight, out, err);
  }

 private:
  bool with_fields_;
  const FieldMap* field_map_;
  bool map_minus_one_;
};

// CSV/TSV through a schema. `schema_to_file[j]` is the file column holding
// schema column j (-1: absent, always missing); `file_columns` the expected count.
class CsvChunkParser : public ChunkParser {
 public:
  CsvChunkParser(std::string path, ReadOptions read, const Schema* schema, char delim,
                 std::vector<int> schema_to_file, size_t file_columns)
      : ChunkParser(std::move(path), read), schema_(schema), delim_(delim),
        schema_to_file_(std::move(schema_to_file)), file_columns_(file_columns) {}
  bool ParseLine(std::string_view line, float* label, float* weight, std::vector<Feature>* out,
                 std::string* err) const override;
  // The schema-ordered cells of this thread's last ParseLine (valid until the next call).
  const std::string_view* LastCells() const;

 private:
  const Schema* schema_;
  char delim_;
  std::vector<int> schema_to_file_;
  size_t file_columns_;
};

// Maps a header line's columns onto the schema (errors name the column).
Status MapHeader(const Schema& schema, std::string_view header, char delim, std::vector<int>* schema_to_file,
                 size_t* file_columns);

}  // namespace fieldfm::data
