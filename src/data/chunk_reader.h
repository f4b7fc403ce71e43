// Cuts a byte stream into chunks of whole lines, so chunks can be parsed
// independently (and in parallel) while line numbers stay exact.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "data/input_stream.h"
#include "fieldfm/status.h"

namespace fieldfm::data {

struct Chunk {
  std::string text;         // whole lines; only the file's last line may lack '\n'
  uint64_t first_line = 1;  // 1-based number of the first line in `text`
};

class ChunkReader {
 public:
  static constexpr size_t kDefaultChunkBytes = 1 << 20;

  explicit ChunkReader(size_t chunk_bytes = kDefaultChunkBytes) : chunk_bytes_(chunk_bytes) {}

  Status Open(const std::string& path);
  // Fills *chunk (reusing its storage). Returns false at end of input.
  Result<bool> Next(Chunk* chunk);
  // Consumes one line (without its line ending), e.g. a CSV header.
  // Returns false when the input is empty.
  Result<bool> ReadLine(std::string* line);

  uint64_t bytes_read() const { return bytes_; }
  uint64_t bytes_consumed() const { return consumed_; }  // handed out as chunks or lines

 private:
  Result<size_t> Fill(std::string* s);  // appends one read to *s

  size_t chunk_bytes_;
  std::unique_ptr<InputStream> in_;
  std::string carry_;  // the partial line after the last chunk's final '\n'
  uint64_t next_line_ = 1;
  uint64_t bytes_ = 0;
  uint64_t consumed_ = 0;
  bool eof_ = false;
};

}  // namespace fieldfm::data
