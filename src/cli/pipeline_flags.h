// The command-line flags that choose a feature pipeline, shared by every
// subcommand that reads data (inspect-data, train, predict, eval, cache).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "fieldfm/data.h"
#include "fieldfm/source.h"
#include "fieldfm/status.h"

namespace fieldfm::cli {

struct PipelineFlags {
  std::string format = "auto";
  std::string schema;
  std::string preset;
  std::string field_map;
  int hash_bits = 22;
  uint64_t hash_seed = 0;
  bool no_header = false;
  bool keep_minus_one = false;
  bool skip_bad_lines = false;
  int threads = 1;
};

// Adds --format, --schema, --preset, --field-map, --hash-bits, --hash-seed,
// --no-header, --keep-minus-one, --skip-bad-lines, --threads to `app`.
void AddPipelineFlags(CLI::App& app, PipelineFlags* flags);

Result<PipelineOptions> ToPipelineOptions(const PipelineFlags& flags);
ReadOptions ToReadOptions(const PipelineFlags& flags);

// Create() + Fit(fit_path) (Fit is skipped when fit_path is empty).
Result<FeaturePipeline> BuildPipeline(const PipelineFlags& flags, const std::string& fit_path);

}  // namespace fieldfm::cli
