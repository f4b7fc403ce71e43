// ExampleSource over a text file: a ChunkReader cuts the (decompressed) input
// into chunks of whole lines, a ChunkParser turns them into examples. With
// threads > 1 a reader thread feeds worker threads and chunks are handed out
// in input order, so the result is identical to a single-threaded read.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/chunk_reader.h"
#include "data/line_parsers.h"
#include "fieldfm/source.h"

namespace fieldfm::data {

class TextSource : public ExampleSource {
 public:
  // Called on every (re)open, after the reader is positioned at the start of
  // the file; may consume a header line. Returns the parser for the rest.
  using ParserFactory = std::function<Result<std::unique_ptr<ChunkParser>>(ChunkReader* reader)>;

  static Result<std::unique_ptr<TextSource>> Open(const std::string& path, const ReadOptions& read,
                                                  ParserFactory factory,
                                                  size_t chunk_bytes = ChunkReader::kDefaultChunkBytes);
  ~TextSource() override;

  Result<size_t> Next(ExampleBlock* out, size_t max_rows) override;
  Status Rewind() override;
  const ReadStats& stats() const override { return stats_; }

 private:
  TextSource(std::string path, ReadOptions read, ParserFactory factory, size_t chunk_bytes);
  Status Start();
  void Stop();
  Result<bool> NextParsed();  // fills current_
  void ReaderLoop();
  void WorkerLoop();

  const std::string path_;
  const ReadOptions read_;
  const ParserFactory factory_;
  const size_t chunk_bytes_;

  std::unique_ptr<ChunkReader> reader_;
  std::unique_ptr<ChunkParser> parser_;
  ReadStats stats_;
  ParsedChunk current_;
  size_t cur_row_ = 0;
  bool finished_ = false;
  Status error_;  // sticky
  Chunk chunk_;   // single-threaded reuse

  // Threaded mode.
  std::mutex mu_;
  std::condition_variable cv_work_, cv_done_, cv_space_;
  std::deque<std::pair<uint64_t, Chunk>> work_;
  std::map<uint64_t, ParsedChunk> done_;
  uint64_t produced_ = 0, consumed_ = 0;
  bool reader_done_ = false, stop_ = false;
  Status reader_status_;
  std::vector<std::thread> threads_;
};

}  // namespace fieldfm::data
