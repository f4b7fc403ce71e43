// An ExampleSource over examples already in memory (tests, benchmarks, and
// callers that hold their data).
#pragma once

#include <algorithm>

#include "fieldfm/source.h"

namespace fieldfm {

class MemorySource : public ExampleSource {
 public:
  explicit MemorySource(ExampleBlock data) : data_(std::move(data)) {}
  Result<size_t> Next(ExampleBlock* out, size_t max_rows) override {
    out->clear();
    const size_t end = std::min(data_.rows(), pos_ + max_rows);
    for (; pos_ < end; ++pos_) {
      out->add(data_.labels[pos_], pos_ < data_.weights.size() ? data_.weights[pos_] : 1.0f, data_.row(pos_));
      ++stats_.rows;
    }
    return out->rows();
  }
  Status Rewind() override {
    pos_ = 0;
    return Status::Ok();
  }
  const ReadStats& stats() const override { return stats_; }
  const ExampleBlock& data() const { return data_; }

 private:
  ExampleBlock data_;
  size_t pos_ = 0;
  ReadStats stats_;
};

}  // namespace fieldfm
