// Write-then-rename, so a crash or an error never leaves a half-written file
// where a good one (or nothing) was before. A device, a pipe or anything under
// /dev or /proc is written in place; "-" and /dev/stdout mean standard output;
// a symbolic link is followed to the file it names.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

#include "fieldfm/status.h"

namespace fieldfm {

class AtomicFile {
 public:
  AtomicFile() = default;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();  // removes the temporary file unless Commit() succeeded

  // Creates "<path>.tmp.<pid>.<n>" next to `path` (same file system, so rename is atomic).
  Status Open(const std::string& path);
  Status Write(const void* data, size_t n);
  Status Write(std::string_view s) { return Write(s.data(), s.size()); }
  std::FILE* file() { return f_; }
  // Flushes, fsyncs and renames onto the final path.
  Status Commit();
  // Removes the temporary file; the destination is untouched.
  void Abandon();
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_path_;
  std::FILE* f_ = nullptr;
};

// Convenience: the whole content at once.
Status WriteFileAtomically(const std::string& path, std::string_view content);

// Reads a whole (small) file, e.g. a schema or a JSON sidecar.
Result<std::string> ReadSmallFile(const std::string& path);

}  // namespace fieldfm
