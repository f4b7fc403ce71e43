#!/usr/bin/python3
"""End-to-end speed table (bench/RESULTS.md): fieldfm vs libffm, xLearn, PyTorch.

Generates the issue's data set with `fieldfm synth` (39 fields = 13 numeric +
26 categorical, one feature per field, 2M train / 200k test rows), then trains
and predicts each model with 1 and 2 threads and prints one markdown table:
rows/s per epoch (median over epochs), predict rows/s (the whole command on
the training rows, and its ratio to training; for fieldfm also the rate of
its prediction loop alone, from the command's summary line: the epoch figure
likewise leaves out setting the model up), peak RSS, best test logloss.
Peers run in the same invocation when found (never built here):
  --libffm DIR   (ffm-train, ffm-predict)   --xlearn DIR  (xlearn_train)
  --torch        (Debian python3-torch; bench/torch_reference.py)
Usage: bench/speed.py --fieldfm build/release/fieldfm --work /tmp/fieldfm-bench
"""
import argparse
import math
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, log, cwd=None):
    """Runs cmd under /usr/bin/time; returns (stdout+stderr text, peak RSS MiB, seconds)."""
    t0 = time.time()
    # xLearn's log naming reads $USER and aborts when it is unset (as in containers).
    env = dict(os.environ, USER=os.environ.get("USER", "bench"))
    p = subprocess.run(["/usr/bin/time", "-f", "PEAK_RSS_KB %M"] + cmd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    secs = time.time() - t0
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n" + p.stdout + "\n")
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-2000:]}")
    m = re.search(r"PEAK_RSS_KB (\d+)", p.stdout)
    return p.stdout, (int(m.group(1)) / 1024 if m else float("nan")), secs


def fieldfm_train(a, name, flags, threads, log):
    model = os.path.join(a.work, f"{name}.s{threads}.model")
    cmd = [a.fieldfm, "train", "-q", "--no-checkpoint", "-s", str(threads), "-p", a.test_cache,
           "--auto-stop"] + flags + [a.train_cache, model]
    out, rss, _ = run(cmd, log)
    epochs = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    rate = statistics.median(e["rows"] / e["seconds"] for e in epochs)
    best = min(e["va_logloss"] for e in epochs)
    auc = min(epochs, key=lambda e: e["va_logloss"])["va_auc"]
    # Batch prediction of the training rows (on the 200k test rows the command
    # was mostly the load of the 2M-row ffm model's 1.9 GB).
    pout, prss, psecs = run([a.fieldfm, "predict", "-s", str(threads), model, a.train_cache, "-o", "/dev/null"], log)
    m = re.search(r"predicted (\d+) rows in ([\d.]+) s", pout)
    loop = int(m.group(1)) / float(m.group(2)) if m and float(m.group(2)) > 0 else float("nan")
    return {"rows_s": rate, "rss": rss, "logloss": best, "auc": auc, "predict_rows_s": a.train_rows / psecs,
            "predict_loop_rows_s": loop, "epochs": len(epochs)}


def libffm_train(a, threads, log):
    model = os.path.join(a.work, f"libffm.s{threads}.model")
    out, rss, _ = run([os.path.join(a.libffm, "ffm-train"), "-k", "4", "-s", str(threads), "-p", a.test_txt,
                       "--auto-stop", a.train_txt, model], log,
                      cwd=a.work)  # ffm-train writes its binary copies of the inputs into the working directory
    rows = [l.split() for l in out.splitlines() if re.match(r"^\s+\d+\s", l)]
    times = [float(r[3]) for r in rows if len(r) >= 4]  # cumulative seconds
    per_epoch = [t - p for t, p in zip(times, [0.0] + times[:-1])]
    best = min(float(r[2]) for r in rows)
    _, _, psecs = run([os.path.join(a.libffm, "ffm-predict"), a.train_txt, model, "/dev/null"], log)
    epoch_secs = statistics.median(per_epoch)  # 0 on tiny inputs: libffm prints tenths of a second
    return {"rows_s": a.train_rows / epoch_secs if epoch_secs > 0 else float("nan"), "rss": rss, "logloss": best,
            "auc": float("nan"), "predict_rows_s": a.train_rows / psecs, "epochs": len(rows)}


def xlearn_train(a, threads, log):
    out, rss, _ = run([os.path.join(a.xlearn, "xlearn_train"), a.train_txt, "-s", "2", "-k", "4", "-v", a.test_txt,
                       "-nthread", str(threads), "-m", os.path.join(a.work, "xlearn.model"), "-l",
                       os.path.join(a.work, "xlearn.log")], log,
                      cwd=a.work)  # xLearn writes its binary copies of the inputs into the working directory
    # Epoch lines, after a progress bracket: "[ 10%      ]     1            0.470893            0.474130              3.96"
    text = re.sub(r"\x1b\[[0-9;]*m", "", out)
    rows = [m.group(1).split() for m in re.finditer(r"^(?:\[[^\]]*\])?(\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+)\s*$", text, re.M)]
    per_epoch = [float(r[-1]) for r in rows]
    epoch_secs = statistics.median(per_epoch)
    return {"rows_s": a.train_rows / epoch_secs if epoch_secs > 0 else float("nan"), "rss": rss,
            "logloss": min(float(r[2]) for r in rows), "auc": float("nan"), "predict_rows_s": float("nan"),
            "epochs": len(rows)}


def torch_train(a, model, k, threads, log):
    out, rss, _ = run(["/usr/bin/python3", os.path.join(HERE, "torch_reference.py"), a.train_txt, a.test_txt,
                       "--model", model, "-k", str(k), "--threads", str(threads), "--train-rows",
                       str(a.torch_rows), "--test-rows", "50000"], log)
    r = [json.loads(l) for l in out.splitlines() if l.startswith("{")][-1]
    return {"rows_s": r["rows_per_s"], "rss": rss, "logloss": r["test_logloss"], "auc": r["test_auc"],
            "predict_rows_s": float("nan"), "epochs": 1}


# The issue's recipe for the neural models, as bench/torch_reference.py runs
# it: Adam for the tables (PyTorch's SparseAdam) and the MLP, batch 1024.
DEEP_EPOCHS = "{deep_epochs}"  # filled from --deep-epochs
DEEP = ["--optimizer", "adam", "--batch-size", "1024", "-t", DEEP_EPOCHS]

MODELS = [  # name, fieldfm flags, torch name, k
    ("lr", ["--model", "lr"], None, 0),
    ("fm", ["--model", "fm", "-k", "8"], "fm", 8),
    ("ffm", ["--model", "ffm", "-k", "4"], "ffm", 4),
    ("deepfm", ["--model", "deepfm", "-k", "16", "--hidden", "100"] + DEEP, "deepfm", 16),
    ("nfm", ["--model", "nfm", "-k", "16", "--hidden", "100"] + DEEP, "nfm", 16),
    ("deepffm", ["--model", "deepffm", "-k", "4", "--hidden", "100"] + DEEP, "deepffm", 4),
    ("nffm", ["--model", "nffm", "-k", "16", "--hidden", "100"] + DEEP, "nffm", 16),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fieldfm", default="build/release/fieldfm")
    ap.add_argument("--work", default="/tmp/fieldfm-bench")
    ap.add_argument("--rows", type=int, default=2000000)
    ap.add_argument("--test-rows", type=int, default=200000)
    ap.add_argument("--models", default=",".join(m[0] for m in MODELS))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--libffm")
    ap.add_argument("--xlearn")
    ap.add_argument("--torch", action="store_true")
    ap.add_argument("--torch-rows", type=int, default=100000, help="PyTorch trains on this many rows (it is slow)")
    ap.add_argument("--deep-epochs", type=int, default=4, help="epochs (at most) of the neural models")
    ap.add_argument("--max-cardinality", type=int,
                    help="values per categorical field (synth's default: 2.9M indices in all, too many for nffm's "
                         "k=16 field-aware tables with Adam state in 24 GB)")
    a = ap.parse_args()
    a.work = os.path.abspath(a.work)
    if a.xlearn:
        a.xlearn = os.path.abspath(a.xlearn)
    if a.libffm:
        a.libffm = os.path.abspath(a.libffm)
    os.makedirs(a.work, exist_ok=True)
    log = os.path.join(a.work, "speed.log")
    prefix = os.path.join(a.work, f"syn-c{a.max_cardinality}" if a.max_cardinality else "syn")
    a.train_txt, a.test_txt = prefix + ".train.ffm", prefix + ".test.ffm"
    a.train_cache, a.test_cache = prefix + ".train.bin", prefix + ".test.bin"
    a.train_rows, a.test_rows = a.rows, a.test_rows
    if not os.path.exists(a.test_txt):
        run([a.fieldfm, "synth", "-o", prefix, "--rows", str(a.rows), "--test-rows", str(a.test_rows), "--fields", "39",
             "--numeric", "13", "--seed", "1", "--threads", "2"] +
            (["--max-cardinality", str(a.max_cardinality)] if a.max_cardinality else []), log)
    run([a.fieldfm, "cache", a.train_txt, "-o", a.train_cache], log)
    run([a.fieldfm, "cache", a.test_txt, "-o", a.test_cache], log)
    sidecar = json.load(open(prefix + ".json"))
    print(f"data: {a.rows} train / {a.test_rows} test rows, 39 fields, "
          f"{'max cardinality ' + str(a.max_cardinality) if a.max_cardinality else 'default cardinalities'}; "
          f"Bayes test logloss "
          f"{sidecar['test']['bayes_logloss']:.4f}", flush=True)

    results = []  # (tool, model, threads, result)
    threads = [int(t) for t in a.threads.split(",")]
    wanted = a.models.split(",")
    for name, flags, tname, k in MODELS:
        if name not in wanted:
            continue
        flags = [str(a.deep_epochs) if f == DEEP_EPOCHS else f for f in flags]
        for t in threads:
            results.append(("fieldfm", name, t, fieldfm_train(a, name, flags, t, log)))
            print(results[-1], flush=True)
            if name == "ffm" and a.libffm:
                results.append(("libffm", name, t, libffm_train(a, t, log)))
                print(results[-1], flush=True)
            if name == "ffm" and a.xlearn:
                results.append(("xlearn", name, t, xlearn_train(a, t, log)))
                print(results[-1], flush=True)
        if a.torch and tname:
            results.append(("pytorch", name, 2, torch_train(a, tname, k, 2, log)))
            print(results[-1], flush=True)

    print("\n| tool | model | threads | train rows/s | vs fieldfm | predict rows/s | predict / train | "
          "predict loop rows/s | loop / train | peak RSS MiB | best test logloss | AUC | epochs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    ours = {(m, t): r for tool, m, t, r in results if tool == "fieldfm"}

    def cell(x, spec, suffix=""):  # a figure a tool does not report (nan) prints as a dash
        return "—" if math.isnan(x) else f"{x:{spec}}{suffix}"

    for tool, m, t, r in results:
        ref = ours.get((m, t))
        ratio = cell(ref["rows_s"] / r["rows_s"], ".1f", "x slower") if tool != "fieldfm" and ref else ""
        loop = r.get("predict_loop_rows_s", float("nan"))
        print(f"| {tool} | {m} | {t} | {cell(r['rows_s'], ',.0f')} | {ratio} | {cell(r['predict_rows_s'], ',.0f')} | "
              f"{cell(r['predict_rows_s'] / r['rows_s'], '.1f', 'x')} | {cell(loop, ',.0f')} | "
              f"{cell(loop / r['rows_s'], '.1f', 'x')} | {cell(r['rss'], ',.0f')} | "
              f"{cell(r['logloss'], '.4f')} | {cell(r['auc'], '.4f')} | {r['epochs']} |")


if __name__ == "__main__":
    main()
