#include "cli/open_input.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "fieldfm/cache.h"

namespace fieldfm::cli {

std::string CachePathFor(const std::string& path) { return path + ".fieldfm-cache"; }

Result<std::unique_ptr<ExampleSource>> OpenInput(const FeaturePipeline& pipeline, const std::string& path,
                                                 const ReadOptions& read, bool use_cache) {
  if (!use_cache) return pipeline.Open(path, read);
  const std::string cache_path = CachePathFor(path);
  FIELDFM_ASSIGN_OR_RETURN(CacheKey key, CacheKeyForFile(path, pipeline.Fingerprint()));
  std::filesystem::path dir = std::filesystem::absolute(cache_path).parent_path();
  if (::access(dir.c_str(), W_OK) != 0) {
    std::fprintf(stderr, "note: %s is not writable; reading %s without a cache\n", dir.c_str(), path.c_str());
    return pipeline.Open(path, read);
  }
  auto open_text = [&]() { return pipeline.Open(path, read); };
  FIELDFM_ASSIGN_OR_RETURN(std::unique_ptr<CacheSource> cache, OpenOrBuildCache(cache_path, key, open_text));
  return std::unique_ptr<ExampleSource>(std::move(cache));
}

}  // namespace fieldfm::cli
