// `fieldfm cache`: parse a text file once into the binary example cache.
#include <cstdio>

#include "cli/command.h"
#include "cli/pipeline_flags.h"
#include "fieldfm/cache.h"
#include "fieldfm/data.h"
#include "util/atomic_file.h"

namespace fieldfm::cli {
namespace {

struct CacheArgs {
  std::string input, output, pipeline_json;
  PipelineFlags flags;
  size_t block_rows = kDefaultCacheBlockRows;
  bool force = false;
};

Status RunCache(const CacheArgs& a) {
  FeaturePipeline pipe;
  const ReadOptions read = ToReadOptions(a.flags);
  if (!a.pipeline_json.empty()) {
    FIELDFM_ASSIGN_OR_RETURN(std::string json, ReadSmallFile(a.pipeline_json));
    FIELDFM_ASSIGN_OR_RETURN(pipe, FeaturePipeline::FromJson(json));
  } else {
    FIELDFM_ASSIGN_OR_RETURN(pipe, BuildPipeline(a.flags, a.input));
  }
  FIELDFM_ASSIGN_OR_RETURN(CacheKey key, CacheKeyForFile(a.input, pipe.Fingerprint()));
  bool rebuilt = true;
  std::unique_ptr<CacheSource> cache;
  if (a.force) {  // the old file stays until the new one is complete
    FIELDFM_ASSIGN_OR_RETURN(auto text, pipe.Open(a.input, read));
    FIELDFM_RETURN_IF_ERROR(BuildCache(*text, key, a.output, a.block_rows));
    FIELDFM_ASSIGN_OR_RETURN(cache, OpenCache(a.output));
  } else {
    auto open_text = [&]() { return pipe.Open(a.input, read); };
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
  AddPipelineFlags(sub, &a->flags);
  sub.add_option("--pipeline", a->pipeline_json, "Use this saved pipeline (JSON) instead of fitting one on INPUT");
  sub.add_option("--block-rows", a->block_rows, "Rows per cache block (the shuffling unit)")->capture_default_str();
  sub.add_flag("--force", a->force, "Rebuild even when the cache is up to date");
  return [a]() { return RunCache(*a); };
}

Register kCache{{"cache", "Convert text data to the binary example cache", SetupCache, 70}};

}  // namespace
}  // namespace fieldfm::cli
