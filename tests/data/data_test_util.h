// Helpers for the data tests: temp files and reading a whole source.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "fieldfm/data.h"
#include "fieldfm/example.h"

namespace fieldfm::testing {

// A fresh directory under the system temp dir, removed with the object.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("fieldfm_data_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name, const std::string& content) const {
    std::string p = (path_ / name).string();
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  std::string Path(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline std::string Shared(const std::string& rel) { return std::string(FIELDFM_SHARED_DATA) + "/" + rel; }
// Our own fixture files (tests/data/schemas), next to this header.
inline std::string Fixture(const std::string& rel) {
  return (std::filesystem::path(__FILE__).parent_path() / "schemas" / rel).string();
}

// Reads every row of `path` through `p` into one block (small batches on purpose).
inline Result<ExampleBlock> ReadAll(const FeaturePipeline& p, const std::string& path, ReadOptions read = {},
                                    ReadStats* stats = nullptr, size_t batch = 97) {
  auto src = p.Open(path, read);
  if (!src.ok()) return src.status();
  ExampleBlock all, block;
  for (;;) {
    auto n = (*src)->Next(&block, batch);
    if (!n.ok()) return n.status();
    if (*n == 0) break;
    for (size_t r = 0; r < block.rows(); ++r) all.add(block.labels[r], block.weights[r], block.row(r));
  }
  if (stats != nullptr) *stats = (*src)->stats();
  return all;
}

inline FeaturePipeline MakePipeline(PipelineOptions o) {
  auto p = FeaturePipeline::Create(o);
  EXPECT_TRUE(p.ok()) << p.status().message();
  return std::move(p).value();
}

}  // namespace fieldfm::testing
