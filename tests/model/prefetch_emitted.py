#!/usr/bin/python3
"""Checks that the hot loops of a fieldfm binary still issue software prefetches.

GCC 12 once deleted every prefetch that sat in a helper function (its IPA
mod-ref pass saw no effect; see src/util/prefetch.h), silently: results stay
the same, only speed drops (FFM epochs 25% slower). This disassembles the
binary and requires, for each function below, a prefetch instruction in the
function itself or in a function it calls (or tail-calls) directly.
Usage: prefetch_emitted.py path/to/fieldfm
"""
import re
import subprocess
import sys

# Demangled name prefixes (without arguments) of the loops that prefetch.
REQUIRED = [
    "fieldfm::LinearFmStep::Step",
    "fieldfm::LinearFmStep::Predict",
    "fieldfm::LinearFmStep::PredictKnownLinear",
    "fieldfm::FusedFfm::Step",
    "fieldfm::FusedFfm::Predict",
    "fieldfm::(anonymous namespace)::EmbeddingBlock::Forward",
    "fieldfm::(anonymous namespace)::EmbeddingBiInteractionBlock::Forward",
    "fieldfm::(anonymous namespace)::LinearBlock::Forward",
    "fieldfm::(anonymous namespace)::Trainer::TrainRows",
]

HEADER = re.compile(r"^([0-9a-f]+) <(.*)>:$")
# Calls, and jumps to a symbol's start (tail calls: "jmp 17aff0 <f(...)>", no "+0x").
CALL = re.compile(r"\b(?:call|jmp)\s+([0-9a-f]+) <[^+]*>$")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", sys.argv[1]], stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    funcs = {}  # address -> (name, has prefetch, called addresses)
    addr = None
    for line in dis.splitlines():
        m = HEADER.match(line)
        if m:
            addr = int(m.group(1), 16)
            funcs[addr] = [m.group(2), False, set()]
        elif addr is not None:
            if "prefetch" in line:
                funcs[addr][1] = True
            c = CALL.search(line)
            if c:
                funcs[addr][2].add(int(c.group(1), 16))

    failures = []
    for want in REQUIRED:
        found = [(a, f) for a, f in funcs.items() if f[0].startswith(want + "(") or f[0].startswith(want + "<")]
        # Template instances (StepK<4>, ...) and clones share the prefix; one of them must prefetch.
        if not found:
            found = [(a, f) for a, f in funcs.items() if f[0].startswith(want)]
        if not found:
            failures.append(f"{want}: not in the binary (renamed? update this list)")
            continue
        ok = any(f[1] or any(funcs.get(c, [None, False])[1] for c in f[2]) for _, f in found)
        print(f"{'ok  ' if ok else 'FAIL'} {want} ({len(found)} symbol(s))")
        if not ok:
            failures.append(f"{want}: no prefetch instruction in it or in its direct callees")
    if failures:
        sys.exit("missing prefetches:\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    main()
