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
echo "== train FFM (libffm flags) and NFFM (field-aware pairs -> MLP), early stopping on the test split"
$FFM train -q -k 4 -t 10 -p "$out/synth.test.ffm" --auto-stop "$out/synth.train.ffm" "$out/ffm.model"
$FFM train -q --model nffm -k 8 --hidden 64 --optimizer adam -s 2 -t 4 -p "$out/synth.test.ffm" --auto-stop \
  "$out/synth.train.ffm" "$out/nffm.model"
echo "== evaluate (the Bayes-optimal floor is in $out/synth.json)"
for m in ffm nffm; do
  echo "-- $m"
  $FFM eval "$out/$m.model" "$out/synth.test.ffm"
done
echo "-- floor and baseline of the test split:"
grep -A6 '"test"' "$out/synth.json" | grep -E 'bayes_logloss|base_rate_logloss'
echo "== predict"
$FFM predict -s 2 "$out/nffm.model" "$out/synth.test.ffm" -o "$out/predictions.txt"
echo "first predictions:"; head -3 "$out/predictions.txt"
echo "demo done: outputs in $out/"
