#include "util/atomic_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
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
  // So is anything under /dev or /proc. Standard output ("-" or /dev/stdout)
  // is written through a copy of fd 1, so `-o - >> log` appends to the log as
  // the shell opened it (reopening /dev/stdout would truncate it).
  if (path == "-" || path == "/dev/stdout") {
    const int fd = ::dup(STDOUT_FILENO);
    f_ = fd >= 0 ? ::fdopen(fd, "wb") : nullptr;
    if (!f_) {
      if (fd >= 0) ::close(fd);
      return Status::IOError("cannot write to standard output: " + ErrnoText());
    }
    return Status::Ok();
  }
  struct stat st;
  const bool special_dir = path.rfind("/dev/", 0) == 0 || path.rfind("/proc/", 0) == 0;
  if (special_dir || (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))) {
    f_ = std::fopen(path.c_str(), "wb");
    if (!f_) return Status::IOError("cannot open " + path + ": " + ErrnoText());
    return Status::Ok();
  }
  // A symbolic link elsewhere is followed: the file it names is replaced,
  // not the link.
  struct stat lst;
  if (::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
    std::error_code ec;
    const auto target = std::filesystem::canonical(path, ec);
    if (!ec) path_ = target.string();
  }
  tmp_path_ = path_ + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
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
