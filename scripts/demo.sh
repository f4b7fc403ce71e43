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
$FFM synth --rows 200000 --fields 20 --numeric 5 --seed 7 -o "$out/train.ffm"
$FFM synth --rows 50000 --fields 20 --numeric 5 --seed 7 --split test -o "$out/test.ffm"
echo "== binary cache + data summary"
$FFM cache "$out/train.ffm" -o "$out/train.ffm.bin"
$FFM inspect-data "$out/train.ffm"
