// `fieldfm info`: build facts users paste into bug reports.
#include <cstdio>

#include "cli/command.h"

namespace fieldfm::cli {
namespace {

Register kInfo{{"info", "Print the build configuration", [](CLI::App&) -> Runner {
                  return [] {
                    std::printf("fieldfm 0.1.0\ncompiler: g++ %d.%d\n", __GNUC__, __GNUC_MINOR__);
#ifdef __AVX512F__
                    std::printf("simd: avx512\n");
#elif defined(__AVX2__)
                    std::printf("simd: avx2\n");
#else
                    std::printf("simd: baseline\n");
#endif
                    return Status::Ok();
                  };
                }, 900}};

}  // namespace
}  // namespace fieldfm::cli
