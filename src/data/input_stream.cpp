#include "data/input_stream.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace fieldfm::data {
namespace {

Status ErrnoError(const std::string& path, const char* what) {
  return Status::IOError(path + ": " + what + ": " + std::strerror(errno));
}

class FdFile {
 public:
  ~FdFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  Status Open(const std::string& path) {
    path_ = path;
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return ErrnoError(path, "cannot open");
    ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
    return Status::Ok();
  }
  Result<size_t> Read(char* buf, size_t n) {
    for (;;) {
      ssize_t got = ::read(fd_, buf, n);
      if (got >= 0) return static_cast<size_t>(got);
      if (errno != EINTR) return ErrnoError(path_, "read failed");
    }
  }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

class PlainStream : public InputStream {
 public:
  Status Open(const std::string& path) { return file_.Open(path); }
  Result<size_t> Read(char* buf, size_t n) override { return file_.Read(buf, n); }

 private:
  FdFile file_;
};

// zlib's gz* API handles concatenated members and is simple to drive.
class GzipStream : public InputStream {
 public:
  ~GzipStream() override {
    if (gz_ != nullptr) gzclose(gz_);
  }
  Status Open(const std::string& path) {
    path_ = path;
    gz_ = gzopen(path.c_str(), "rb");
    if (gz_ == nullptr) return ErrnoError(path, "cannot open");
    gzbuffer(gz_, 1 << 18);
    return Status::Ok();
  }
  Result<size_t> Read(char* buf, size_t n) override {
    if (n > (1u << 30)) n = 1u << 30;
    int got = gzread(gz_, buf, static_cast<unsigned>(n));
    if (got < 0) {
      int err = 0;
      const char* msg = gzerror(gz_, &err);
      return Status::DataError(path_ + ": corrupt gzip stream: " + (msg ? msg : "unknown error"));
    }
    if (got == 0) {  // end of input: a cut-off stream reports Z_BUF_ERROR here
      int err = 0;
      const char* msg = gzerror(gz_, &err);
      if (err != Z_OK && err != Z_STREAM_END) return Status::DataError(path_ + ": corrupt gzip stream: " + msg);
    }
    return static_cast<size_t>(got);
  }

 private:
  gzFile gz_ = nullptr;
  std::string path_;
};

class ZstdStream : public InputStream {
 public:
  ~ZstdStream() override { ZSTD_freeDCtx(ctx_); }
  Status Open(const std::string& path) {
    FIELDFM_RETURN_IF_ERROR(file_.Open(path));
    ctx_ = ZSTD_createDCtx();
    in_buf_.resize(ZSTD_DStreamInSize());
    return Status::Ok();
  }
  Result<size_t> Read(char* buf, size_t n) override {
    ZSTD_outBuffer out{buf, n, 0};
    while (out.pos == 0) {
      if (in_.pos == in_.size) {
        auto got = file_.Read(in_buf_.data(), in_buf_.size());
        if (!got.ok()) return got.status();
        if (*got == 0) {
          if (!frame_done_) return Status::DataError(file_.path() + ": truncated zstd stream");
          return size_t{0};
        }
        in_ = ZSTD_inBuffer{in_buf_.data(), *got, 0};
      }
      size_t rc = ZSTD_decompressStream(ctx_, &out, &in_);
      if (ZSTD_isError(rc)) {
        return Status::DataError(file_.path() + ": corrupt zstd stream: " + ZSTD_getErrorName(rc));
      }
      frame_done_ = (rc == 0);
    }
    return out.pos;
  }

 private:
  FdFile file_;
  ZSTD_DCtx* ctx_ = nullptr;
  std::vector<char> in_buf_;
  ZSTD_inBuffer in_{nullptr, 0, 0};
  bool frame_done_ = true;
};

}  // namespace

Result<Compression> DetectCompression(const std::string& path) {
  FdFile f;
  FIELDFM_RETURN_IF_ERROR(f.Open(path));
  unsigned char magic[4] = {0, 0, 0, 0};
  size_t have = 0;
  while (have < 4) {
    auto got = f.Read(reinterpret_cast<char*>(magic) + have, 4 - have);
    if (!got.ok()) return got.status();
    if (*got == 0) break;
    have += *got;
  }
  if (have >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) return Compression::kGzip;
  if (have >= 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd) {
    return Compression::kZstd;
  }
  return Compression::kNone;
}

Result<std::unique_ptr<InputStream>> OpenInputStream(const std::string& path) {
  FIELDFM_ASSIGN_OR_RETURN(Compression c, DetectCompression(path));
  switch (c) {
    case Compression::kGzip: {
      auto s = std::make_unique<GzipStream>();
      FIELDFM_RETURN_IF_ERROR(s->Open(path));
      return std::unique_ptr<InputStream>(std::move(s));
    }
    case Compression::kZstd: {
      auto s = std::make_unique<ZstdStream>();
      FIELDFM_RETURN_IF_ERROR(s->Open(path));
      return std::unique_ptr<InputStream>(std::move(s));
    }
    case Compression::kNone:
      break;
  }
  auto s = std::make_unique<PlainStream>();
  FIELDFM_RETURN_IF_ERROR(s->Open(path));
  return std::unique_ptr<InputStream>(std::move(s));
}

}  // namespace fieldfm::data
