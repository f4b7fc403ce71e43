#!/usr/bin/env bash
# The main job, end to end, on data fieldfm generates itself:
# install -> build -> synth -> cache -> inspect -> train -> eval -> predict.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh release
FFM=build/release/fieldfm
out=demo
mkdir -p "$out"
echo "== generating synthetic CTR data (hidden ground-truth model, known Bayes floor)"
$FFM synth -o "$out/synth" --rows 200000 --test-rows 50000 --fields 20 --numeric 5 --seed 7
echo "== binary cache + data summary"
$FFM cache "$out/synth.train.ffm" -o "$out/synth.train.bin"
$FFM inspect-data "$out/synth.train.ffm"
