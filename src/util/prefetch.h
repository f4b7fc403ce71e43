// Software prefetches the compiler keeps.
//
// GCC 12 deletes __builtin_prefetch when it sits in a function whose only
// effect it is: the IPA mod-ref pass records the function as touching no
// memory, so its calls are removed as dead code (FusedFfm::Prefetch compiled
// to a bare `ret`; no prefetch was left in the FFM, FM or LR loops; building
// with -fno-ipa-modref brings them back). A volatile asm is an effect no pass
// removes. tests/model/prefetch_emitted_test.sh checks the hot loops keep them.
#pragma once

namespace fieldfm {

// Into every level (prefetcht0).
inline void PrefetchL1(const void* p) {
#if defined(__x86_64__)
  asm volatile("prefetcht0 (%0)" : : "r"(p));
#else
  __builtin_prefetch(p, 0, 3);
#endif
}

// Into L2 and beyond (prefetcht1): rows wanted soon, not next.
inline void PrefetchL2(const void* p) {
#if defined(__x86_64__)
  asm volatile("prefetcht1 (%0)" : : "r"(p));
#else
  __builtin_prefetch(p, 0, 2);
#endif
}

// Into the outer levels only (prefetcht2): data read once.
inline void PrefetchL3(const void* p) {
#if defined(__x86_64__)
  asm volatile("prefetcht2 (%0)" : : "r"(p));
#else
  __builtin_prefetch(p, 0, 1);
#endif
}

// With intent to write (prefetchw where the CPU has it; else as PrefetchL1).
inline void PrefetchWrite(const void* p) {
#if defined(__x86_64__) && defined(__PRFCHW__)
  asm volatile("prefetchw (%0)" : : "r"(p));
#elif defined(__x86_64__)
  asm volatile("prefetcht0 (%0)" : : "r"(p));
#else
  __builtin_prefetch(p, 1, 3);
#endif
}

}  // namespace fieldfm
