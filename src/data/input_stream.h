// Byte streams over plain, gzip and zstd files. The codec is chosen by the
// file's magic bytes, so a renamed or extension-less file still works.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "fieldfm/status.h"

namespace fieldfm::data {

class InputStream {
 public:
  virtual ~InputStream() = default;
  // Reads up to n bytes; 0 means end of stream.
  virtual Result<size_t> Read(char* buf, size_t n) = 0;
};

enum class Compression { kNone, kGzip, kZstd };

// Looks at the first bytes of `path`.
Result<Compression> DetectCompression(const std::string& path);
Result<std::unique_ptr<InputStream>> OpenInputStream(const std::string& path);

}  // namespace fieldfm::data
