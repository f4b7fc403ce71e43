#include "util/atomic_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace fieldfm {

namespace {
std::string ErrnoText() { return std::strerror(errno); }
}  // namespace

AtomicFile::~AtomicFile() { Abandon(); }

Status AtomicFile::Open(const std::string& path) {
  static std::atomic<int> counter{0};
  Abandon();
  path_ = path;
  // A device or a pipe (/dev/null, /dev/stdout, a FIFO) is written in place:
  // renaming a regular file onto it would replace the device (as root,
  // `-o /dev/null` did exactly that), and there is nothing there to keep.
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    f_ = std::fopen(path.c_str(), "wb");
    if (!f_) return Status::IOError("cannot open " + path + ": " + ErrnoText());
    return Status::Ok();
  }
  tmp_path_ = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!f_) return Status::IOError("cannot create " + tmp_path_ + ": " + ErrnoText());
  return Status::Ok();
}

Status AtomicFile::Write(const void* data, size_t n) {
  if (!f_) return Status::Internal("AtomicFile::Write before Open");
  if (n && std::fwrite(data, 1, n, f_) != n) return Status::IOError("write to " + tmp_path_ + " failed: " + ErrnoText());
  return Status::Ok();
}

Status AtomicFile::Commit() {
  if (!f_) return Status::Internal("AtomicFile::Commit before Open");
  if (tmp_path_.empty()) {  // written in place (a device or a pipe): flush, no fsync or rename
    const bool ok = std::fflush(f_) == 0;
    const std::string err = ok ? "" : ErrnoText();
    const bool closed = std::fclose(f_) == 0;
    f_ = nullptr;
    if (!ok || !closed) return Status::IOError("writing " + path_ + " failed: " + (err.empty() ? ErrnoText() : err));
    return Status::Ok();
  }
  bool ok = std::fflush(f_) == 0 && ::fsync(fileno(f_)) == 0;
  std::string err = ok ? "" : ErrnoText();
  ok = (std::fclose(f_) == 0) && ok;
  f_ = nullptr;
  if (!ok) {
    std::remove(tmp_path_.c_str());
    return Status::IOError("writing " + path_ + " failed: " + (err.empty() ? ErrnoText() : err));
  }
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    std::string e = ErrnoText();
    std::remove(tmp_path_.c_str());
    return Status::IOError("cannot rename " + tmp_path_ + " to " + path_ + ": " + e);
  }
  tmp_path_.clear();
  return Status::Ok();
}

void AtomicFile::Abandon() {
  if (f_) {
    std::fclose(f_);
    f_ = nullptr;
  }
  if (!tmp_path_.empty()) {
    std::remove(tmp_path_.c_str());
    tmp_path_.clear();
  }
}

Status WriteFileAtomically(const std::string& path, std::string_view content) {
  AtomicFile f;
  FIELDFM_RETURN_IF_ERROR(f.Open(path));
  FIELDFM_RETURN_IF_ERROR(f.Write(content));
  return f.Commit();
}

Result<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot open " + path + ": " + ErrnoText());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::IOError("cannot read " + path);
  return ss.str();
}

}  // namespace fieldfm
