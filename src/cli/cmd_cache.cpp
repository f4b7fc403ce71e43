// `fieldfm cache`: parse a text file once into the binary example cache.
#include <cstdio>
#include <map>

#include "cli/command.h"
#include "fieldfm/cache.h"
#include "fieldfm/data.h"
#include "util/atomic_file.h"

namespace fieldfm::cli {
namespace {

struct CacheArgs {
  std::string input, output, pipeline_json;
  PipelineOptions pipeline;
  ReadOptions read;
  size_t block_rows = kDefaultCacheBlockRows;
  bool force = false;
};

Status RunCache(const CacheArgs& a) {
  FeaturePipeline pipe;
  if (!a.pipeline_json.empty()) {
    FIELDFM_ASSIGN_OR_RETURN(std::string json, ReadSmallFile(a.pipeline_json));
    FIELDFM_ASSIGN_OR_RETURN(pipe, FeaturePipeline::FromJson(json));
  } else {
    FIELDFM_ASSIGN_OR_RETURN(pipe, FeaturePipeline::Create(a.pipeline));
    FIELDFM_RETURN_IF_ERROR(pipe.Fit(a.input, a.read));
  }
  FIELDFM_ASSIGN_OR_RETURN(CacheKey key, CacheKeyForFile(a.input, pipe.Fingerprint()));
  bool rebuilt = true;
  std::unique_ptr<CacheSource> cache;
  if (a.force) {  // the old file stays until the new one is complete
    FIELDFM_ASSIGN_OR_RETURN(auto text, pipe.Open(a.input, a.read));
    FIELDFM_RETURN_IF_ERROR(BuildCache(*text, key, a.output, a.block_rows));
    FIELDFM_ASSIGN_OR_RETURN(cache, OpenCache(a.output));
  } else {
    auto open_text = [&]() { return pipe.Open(a.input, a.read); };
    FIELDFM_ASSIGN_OR_RETURN(cache, OpenOrBuildCache(a.output, key, open_text, a.block_rows, &rebuilt));
  }
  const CacheInfo& info = cache->info();
  std::printf("%s %s: %llu rows, %llu features, %llu blocks, %u fields, index space %llu, %.1f MiB\n",
              rebuilt ? "wrote" : "up to date:", a.output.c_str(), static_cast<unsigned long long>(info.rows),
              static_cast<unsigned long long>(info.features), static_cast<unsigned long long>(info.num_blocks),
              info.max_field, static_cast<unsigned long long>(info.max_index), info.file_size / 1048576.0);
  return Status::Ok();
}

Runner SetupCache(CLI::App& sub) {
  auto a = std::make_shared<CacheArgs>();
  sub.add_option("input", a->input, "Text input (libffm, libsvm, CSV/TSV; .gz/.zst ok)")->required();
  sub.add_option("-o,--output", a->output, "Cache file to write")->required();
  sub.add_option("--format", a->pipeline.format, "auto, libffm, libsvm, csv or tsv")
      ->transform(CLI::CheckedTransformer(std::map<std::string, InputFormat>{{"auto", InputFormat::kAuto},
                                                                             {"libffm", InputFormat::kLibffm},
                                                                             {"libsvm", InputFormat::kLibsvm},
                                                                             {"csv", InputFormat::kCsv},
                                                                             {"tsv", InputFormat::kTsv}}));
  sub.add_option("--schema", a->pipeline.schema_path, "CSV/TSV schema (.toml or .json)");
  sub.add_option("--preset", a->pipeline.preset, "Built-in schema: criteo or avazu");
  sub.add_option("--field-map", a->pipeline.field_map_path, "libsvm: index ranges -> field");
  sub.add_option("--hash-bits", a->pipeline.hash_bits, "Hashed categorical space")->capture_default_str();
  sub.add_option("--pipeline", a->pipeline_json, "Use this saved pipeline (JSON) instead of fitting one on INPUT");
  sub.add_option("--block-rows", a->block_rows, "Rows per cache block (the shuffling unit)")->capture_default_str();
  sub.add_flag("--skip-bad-lines", a->read.skip_bad_lines, "Skip malformed lines instead of failing");
  sub.add_option("--threads", a->read.threads, "Parser threads")->capture_default_str();
  sub.add_flag("--force", a->force, "Rebuild even when the cache is up to date");
  return [a]() { return RunCache(*a); };
}

Register kCache{{"cache", "Convert text data to the binary example cache", SetupCache, 70}};

}  // namespace
}  // namespace fieldfm::cli
