// The feature pipeline: how raw input (libffm / libsvm / CSV lines, or a JSON
// instance at serving time) becomes Features. It is saved whole inside model
// files, so predict and serve need nothing but the model.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fieldfm/example.h"
#include "fieldfm/source.h"
#include "fieldfm/status.h"

namespace fieldfm {

enum class InputFormat { kAuto, kLibffm, kLibsvm, kCsv, kTsv };

// What the user said on the command line / config file.
struct PipelineOptions {
  InputFormat format = InputFormat::kAuto;  // kAuto: by extension/content sniffing
  std::string schema_path;     // CSV/TSV schema (.toml or .json)
  std::string preset;          // "criteo" | "avazu" | "" (built-in schemas)
  std::string field_map_path;  // libsvm: index ranges -> field
  int hash_bits = 22;          // hashed categorical space per pipeline
  uint64_t hash_seed = 0;
  bool header = true;          // CSV/TSV first line is a header (when no preset says otherwise)
  bool map_minus_one = true;   // label -1 becomes 0 (libsvm/libFM +-1 classification data)
};

// "auto" | "libffm" | "libsvm" (also "libfm") | "csv" | "tsv".
Result<InputFormat> ParseInputFormat(std::string_view name);
const char* InputFormatName(InputFormat format);

class FeaturePipeline {
 public:
  FeaturePipeline();
  ~FeaturePipeline();
  FeaturePipeline(FeaturePipeline&&) noexcept;
  FeaturePipeline& operator=(FeaturePipeline&&) noexcept;
  FeaturePipeline(const FeaturePipeline&);
  FeaturePipeline& operator=(const FeaturePipeline&);

  static Result<FeaturePipeline> Create(const PipelineOptions& options);

  // Learns what needs the training data (vocabularies, quantile bin edges).
  // A no-op for formats that carry feature ids already (libffm, libsvm).
  // On a binary cache (`fieldfm cache`) with format auto, it takes the sparse
  // format whose pipeline the cache was built with.
  Status Fit(const std::string& train_path, const ReadOptions& read);

  // A streaming source over a text file (plain, .gz or .zst; LF or CRLF).
  Result<std::unique_ptr<ExampleSource>> Open(const std::string& path, const ReadOptions& read) const;

  // Serving: one instance, either named columns (schema pipelines) or a
  // libffm/libsvm token string ("3:17:1 5:9:1"). `ignored` counts unknown keys.
  Status EncodeJson(const nlohmann::json& instance, std::vector<Feature>* out, size_t* ignored) const;
  Status EncodeTokens(std::string_view tokens, std::vector<Feature>* out) const;

  // Field count and names when the pipeline knows them (schemas, field maps);
  // 0 / empty for libffm, where the data decides.
  uint32_t num_fields() const;
  std::vector<std::string> field_names() const;
  // Size of the feature index space the pipeline can emit (0 = decided by data).
  uint64_t index_space() const;

  // Full state, for model files and cache invalidation.
  std::string ToJson() const;
  static Result<FeaturePipeline> FromJson(std::string_view json);
  uint64_t Fingerprint() const;  // hash of ToJson()

  InputFormat format() const;

 private:
  Status FitFromCache(const std::string& path);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fieldfm
