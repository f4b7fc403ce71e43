#include "data/chunk_reader.h"

#include <algorithm>
#include <cstring>

namespace fieldfm::data {

Status ChunkReader::Open(const std::string& path) {
  auto s = OpenInputStream(path);
  if (!s.ok()) return s.status();
  in_ = std::move(s).value();
  carry_.clear();
  next_line_ = 1;
  bytes_ = 0;
  consumed_ = 0;
  eof_ = false;
  return Status::Ok();
}

Result<size_t> ChunkReader::Fill(std::string* s) {
  if (eof_) return size_t{0};
  size_t old = s->size();
  size_t want = std::max<size_t>(chunk_bytes_ / 2, 1 << 16);
  s->resize(old + want);
  auto got = in_->Read(s->data() + old, want);
  if (!got.ok()) {
    s->resize(old);
    return got.status();
  }
  s->resize(old + *got);
  bytes_ += *got;
  if (*got == 0) eof_ = true;
  return *got;
}

Result<bool> ChunkReader::Next(Chunk* chunk) {
  std::string& text = chunk->text;
  text.clear();
  text.swap(carry_);  // the carried partial line starts this chunk
  size_t scanned = 0;  // bytes already known to hold no '\n' past the last cut
  for (;;) {
    if (text.size() >= chunk_bytes_ || eof_) {
      // Cut after the last newline; keep the tail for the next chunk.
      const char* begin = text.data();
      const char* nl = nullptr;
      for (size_t i = text.size(); i > scanned; --i) {
        if (begin[i - 1] == '\n') {
          nl = begin + i - 1;
          break;
        }
      }
      if (nl != nullptr) {
        size_t cut = static_cast<size_t>(nl - begin) + 1;
        carry_.assign(text, cut, std::string::npos);
        text.resize(cut);
        break;
      }
      if (eof_) break;  // the final line has no newline
      scanned = text.size();
    }
    auto got = Fill(&text);
    if (!got.ok()) return got.status();
  }
  if (text.empty()) return false;
  consumed_ += text.size();
  chunk->first_line = next_line_;
  next_line_ += static_cast<uint64_t>(std::count(text.begin(), text.end(), '\n'));
  return true;
}

Result<bool> ChunkReader::ReadLine(std::string* line) {
  size_t scanned = 0;
  for (;;) {
    const void* nl = std::memchr(carry_.data() + scanned, '\n', carry_.size() - scanned);
    if (nl != nullptr) {
      size_t pos = static_cast<size_t>(static_cast<const char*>(nl) - carry_.data());
      line->assign(carry_, 0, pos);
      carry_.erase(0, pos + 1);
      consumed_ += pos + 1;
      break;
    }
    scanned = carry_.size();
    auto got = Fill(&carry_);
    if (!got.ok()) return got.status();
    if (*got == 0) {
      if (carry_.empty()) return false;
      consumed_ += carry_.size();
      line->swap(carry_);
      carry_.clear();
      break;
    }
  }
  if (!line->empty() && line->back() == '\r') line->pop_back();
  ++next_line_;
  return true;
}

}  // namespace fieldfm::data
