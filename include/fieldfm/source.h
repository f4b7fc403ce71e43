// Streaming sources of examples: text parsers (libffm, libsvm, CSV/TSV) and
// the binary cache all implement ExampleSource, so trainers never care where
// rows come from.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fieldfm/example.h"
#include "fieldfm/status.h"

namespace fieldfm {

// Counts a source accumulates while it is read.
struct ReadStats {
  uint64_t rows = 0;          // examples produced
  uint64_t bad_lines = 0;     // lines skipped under --skip-bad-lines
  uint64_t bytes = 0;         // input bytes consumed (uncompressed)
  uint32_t max_field = 0;     // largest field id seen + 1 (0 when no features)
  uint64_t max_index = 0;     // largest feature index seen + 1
  std::vector<std::string> first_errors;  // "file:line: problem (token)", at most a few
};

struct ReadOptions {
  bool skip_bad_lines = false;  // default: the first bad line is an error
  size_t max_reported_errors = 5;
  int threads = 1;              // parser threads (text sources)
};

class ExampleSource {
 public:
  virtual ~ExampleSource() = default;
  // Appends up to max_rows examples to *out (which it clears first).
  // Returns the number of rows appended; 0 means end of input.
  virtual Result<size_t> Next(ExampleBlock* out, size_t max_rows) = 0;
  // Back to the first row (a new epoch). Text sources re-open the file.
  virtual Status Rewind() = 0;
  virtual const ReadStats& stats() const = 0;
};

}  // namespace fieldfm
