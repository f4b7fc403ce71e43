#include "data/text_source.h"

#include <algorithm>

namespace fieldfm::data {

TextSource::TextSource(std::string path, ReadOptions read, ParserFactory factory, size_t chunk_bytes)
    : path_(std::move(path)), read_(read), factory_(std::move(factory)), chunk_bytes_(chunk_bytes) {}

TextSource::~TextSource() { Stop(); }

Result<std::unique_ptr<TextSource>> TextSource::Open(const std::string& path, const ReadOptions& read,
                                                     ParserFactory factory, size_t chunk_bytes) {
  std::unique_ptr<TextSource> s(new TextSource(path, read, std::move(factory), chunk_bytes));
  FIELDFM_RETURN_IF_ERROR(s->Start());
  return s;
}

Status TextSource::Start() {
  stats_ = ReadStats();
  current_ = ParsedChunk();
  cur_row_ = 0;
  finished_ = false;
  error_ = Status::Ok();
  reader_ = std::make_unique<ChunkReader>(chunk_bytes_);
  FIELDFM_RETURN_IF_ERROR(reader_->Open(path_));
  auto parser = factory_(reader_.get());
  if (!parser.ok()) return parser.status();
  parser_ = std::move(parser).value();
  stats_.bytes = reader_->bytes_consumed();  // a header line, if the factory read one
  if (read_.threads > 1) {
    work_.clear();
    done_.clear();
    produced_ = consumed_ = 0;
    reader_done_ = stop_ = false;
    reader_status_ = Status::Ok();
    threads_.emplace_back([this] { ReaderLoop(); });
    for (int i = 0; i < read_.threads; ++i) threads_.emplace_back([this] { WorkerLoop(); });
  }
  return Status::Ok();
}

void TextSource::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_work_.notify_all();
  cv_space_.notify_all();
  cv_done_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

Status TextSource::Rewind() {
  Stop();
  return Start();
}

void TextSource::ReaderLoop() {
  const uint64_t max_in_flight = static_cast<uint64_t>(read_.threads) * 2 + 2;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_space_.wait(lock, [&] { return stop_ || produced_ - consumed_ < max_in_flight; });
      if (stop_) return;
    }
    Chunk chunk;
    auto got = reader_->Next(&chunk);
    std::lock_guard<std::mutex> lock(mu_);
    if (!got.ok() || !*got) {
      if (!got.ok()) reader_status_ = got.status();
      reader_done_ = true;
      cv_work_.notify_all();
      cv_done_.notify_all();
      return;
    }
    work_.emplace_back(produced_++, std::move(chunk));
    cv_work_.notify_one();
  }
}

void TextSource::WorkerLoop() {
  for (;;) {
    std::pair<uint64_t, Chunk> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_work_.wait(lock, [&] { return stop_ || !work_.empty() || reader_done_; });
      if (stop_ || work_.empty()) return;
      job = std::move(work_.front());
      work_.pop_front();
    }
    ParsedChunk parsed;
    parser_->Parse(job.second, &parsed);
    std::lock_guard<std::mutex> lock(mu_);
    done_.emplace(job.first, std::move(parsed));
    cv_done_.notify_all();
  }
}

Result<bool> TextSource::NextParsed() {
  if (read_.threads <= 1) {
    auto got = reader_->Next(&chunk_);
    if (!got.ok()) return got.status();
    if (!*got) return false;
    parser_->Parse(chunk_, &current_);
    return true;
  }
  std::unique_lock<std::mutex> lock(mu_);
  cv_done_.wait(lock, [&] { return done_.count(consumed_) > 0 || (reader_done_ && consumed_ == produced_); });
  auto it = done_.find(consumed_);
  if (it == done_.end()) {
    if (!reader_status_.ok()) return reader_status_;
    return false;
  }
  current_ = std::move(it->second);
  done_.erase(it);
  ++consumed_;
  cv_space_.notify_one();
  return true;
}

Result<size_t> TextSource::Next(ExampleBlock* out, size_t max_rows) {
  out->clear();
  if (!error_.ok()) return error_;
  while (out->rows() < max_rows) {
    if (cur_row_ >= current_.block.rows()) {
      if (finished_) break;
      auto got = NextParsed();
      if (!got.ok()) {
        error_ = got.status();
        return error_;
      }
      if (!*got) {
        finished_ = true;
        if (stats_.rows == 0 && stats_.bad_lines == 0) {
          error_ = Status::DataError(path_ + ": empty file (no examples)");
          return error_;
        }
        break;
      }
      stats_.bytes += current_.bytes;
      stats_.bad_lines += current_.bad_lines;
      for (auto& e : current_.errors) {
        if (stats_.first_errors.size() < read_.max_reported_errors) stats_.first_errors.push_back(std::move(e));
      }
      if (!current_.fatal.ok()) {
        error_ = current_.fatal;
        return error_;
      }
      stats_.rows += current_.block.rows();
      stats_.max_field = std::max(stats_.max_field, current_.max_field);
      stats_.max_index = std::max(stats_.max_index, current_.max_index);
      cur_row_ = 0;
      continue;
    }
    ExampleBlock& src = current_.block;
    const size_t take = std::min(max_rows - out->rows(), src.rows() - cur_row_);
    if (cur_row_ == 0 && take == src.rows() && out->empty()) {
      std::swap(*out, src);  // whole chunk: hand over the buffers, no copy
      src.clear();
      cur_row_ = 0;
      continue;
    }
    const uint64_t f_begin = src.offsets[cur_row_], f_end = src.offsets[cur_row_ + take];
    const uint64_t shift = out->features.size();
    out->labels.insert(out->labels.end(), src.labels.begin() + cur_row_, src.labels.begin() + cur_row_ + take);
    out->weights.insert(out->weights.end(), src.weights.begin() + cur_row_, src.weights.begin() + cur_row_ + take);
    out->features.insert(out->features.end(), src.features.begin() + f_begin, src.features.begin() + f_end);
    for (size_t r = 1; r <= take; ++r) out->offsets.push_back(src.offsets[cur_row_ + r] - f_begin + shift);
    cur_row_ += take;
  }
  return out->rows();
}

}  // namespace fieldfm::data
