#!/usr/bin/python3
"""Accuracy table (bench/RESULTS.md): all seven models on real and synthetic data.

Data sets (read from ../shared/data, never copied into the repo):
  frappe       frappe_nfm: train on the validation file minus a 10% hold-out (early stopping), test on the test file
  criteo8k     criteo_kaggle_8k raw TSV through the criteo preset: train / dev (early stopping) / test
  criteo_ffm   criteo_xlearn_ffm libffm files: train (10% hold-out) / test
  synth        fieldfm synth, 39 fields, 1M train / 100k valid / 200k test rows
The tree baseline is Debian's xgboost CLI (hist, depth 8, eta 0.1, 300 rounds: its CLI has no early stopping)
on the same rows in libsvm form (libffm minus the field; columns seen fewer than --xgboost-min-count times in
training dropped when there are more than 100k). Prints one markdown table.
Usage: bench/accuracy.py --fieldfm build/release/fieldfm [--sets frappe,criteo8k,criteo_ffm,synth] [--tune-lr 0.05,0.1,0.2] [--tune-decay 1,0.5] [--seeds 1,2,3]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")

MODELS = {  # flags per model; the deep models' MLP is one hidden layer as wide as BARS' Frappe setting (400)
    "lr": ["--model", "lr"],
    "fm": ["--model", "fm", "-k", "8"],
    "ffm": ["--model", "ffm", "-k", "4"],
    "deepfm": ["--model", "deepfm", "-k", "16", "--hidden", "400"],
    "nfm": ["--model", "nfm", "-k", "16", "--hidden", "400"],
    "deepffm": ["--model", "deepffm", "-k", "8", "--hidden", "400"],
    "nffm": ["--model", "nffm", "-k", "16", "--hidden", "400"],
}


def sh(cmd, log):
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        f.write(p.stdout + "\n")
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout[-3000:]}")
    return p.stdout


def split_holdout(src, train_out, hold_out, every=10):
    """Every 10th line to the hold-out: deterministic, keeps the order."""
    with open(src, newline="") as f, open(train_out, "w", newline="") as a, open(hold_out, "w", newline="") as b:
        for i, line in enumerate(f):
            (b if i % every == every - 1 else a).write(line)


def feature_ids(tok, field_aware):
    """(index, value) pairs of one libffm/libsvm line's features."""
    for t in tok[1:]:
        i, v = (t.split(":", 1)[1] if field_aware else t).split(":")
        yield int(i), v


def xgboost_columns(train, field_aware, min_count):
    """Column ids for xgboost: above 100k distinct features, those seen at least min_count times
    in the training file; numbered densely in order of first appearance. A tree cannot use a rarer one-hot column
    anyway (it needs min_child_weight of hessian on both sides), and hist's cost grows with the
    column count: on synth's 700k one-hot columns it ran 4-6x slower per round for the same
    hold-out logloss (bench/RESULTS.md)."""
    counts = {}
    with open(train) as f:
        for line in f:
            for i, _ in feature_ids(line.split(), field_aware):
                counts[i] = counts.get(i, 0) + 1
    if len(counts) <= 100000:
        min_count = 1  # small sets (frappe, criteo_ffm) keep every column
    cols = {}
    for i, c in counts.items():
        if c >= min_count:
            cols[i] = len(cols)
    return cols


def to_libsvm(src, dst, field_aware, cols):
    """libffm -> libsvm (drop the field, keep the columns in `cols`, renumbered); labels
    -1/+1 -> 0/1 for xgboost's binary:logistic. The first row carries `width-1:0` so every
    file has the same column count (the CLI refuses a test file with fewer columns than the
    model)."""
    width = len(cols)
    with open(src) as f, open(dst, "w") as out:
        for n, line in enumerate(f):
            tok = line.split()
            if not tok:
                continue
            y = "1" if float(tok[0]) > 0 else "0"
            # xgboost wants ascending unique indices per row
            d = {cols[i]: v for i, v in feature_ids(tok, field_aware) if i in cols}
            if n == 0 and width > 0:
                d.setdefault(width - 1, "0")
            out.write(y + " " + " ".join(f"{i}:{d[i]}" for i in sorted(d)) + "\n")


def xgboost(work, name, train, valid, test, log, threads):
    conf = os.path.join(work, f"{name}.xgb.conf")
    model = os.path.join(work, f"{name}.xgb.model")
    pred = os.path.join(work, f"{name}.xgb.pred")
    common = (f'booster = gbtree\nobjective = binary:logistic\ntree_method = hist\nmax_depth = 8\neta = 0.1\n'
              f'nthread = {threads}\neval_metric = logloss\n')
    with open(conf, "w") as f:
        f.write(common + f'num_round = 300\n'
                f'data = "{train}?format=libsvm"\neval[valid] = "{valid}?format=libsvm"\nmodel_out = "{model}"\n')
    t0 = time.time()
    sh(["xgboost", conf], log)
    secs = time.time() - t0
    sh(["xgboost", conf, "task=pred", f"model_in={model}", f'test:data={test}?format=libsvm', f"name_pred={pred}"], log)
    preds = [float(l) for l in open(pred)]
    labels = [1.0 if l.split()[0] == "1" else 0.0 for l in open(test)]
    return metrics(preds, labels) | {"seconds": secs}


def metrics(p, y):
    import math
    eps = 1e-15
    ll = -sum(yy * math.log(min(max(pp, eps), 1 - eps)) + (1 - yy) * math.log(1 - min(max(pp, eps), 1 - eps))
              for pp, yy in zip(p, y)) / len(y)
    order = sorted(range(len(p)), key=lambda i: p[i])
    ranks = [0.0] * len(p)
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and p[order[j]] == p[order[i]]:
            j += 1
        for t in range(i, j):
            ranks[order[t]] = (i + j + 1) / 2.0
        i = j
    npos = sum(y)
    nneg = len(y) - npos
    auc = (sum(r for r, yy in zip(ranks, y) if yy > 0.5) - npos * (npos + 1) / 2) / (npos * nneg)
    return {"logloss": ll, "auc": auc}


def fieldfm_run(a, name, model, flags, train, valid, test, log, extra):
    """One fieldfm_run_seed per --seeds seed; AUC and logloss are their means, with the
    AUC range across seeds (hogwild threads and initialisation make runs differ)."""
    runs = [fieldfm_run_seed(a, name, model, flags, train, valid, test, log, extra, seed)
            for seed in a.seeds.split(",")]
    mean = lambda k: sum(r[k] for r in runs) / len(runs)
    out = runs[0] | {"auc": mean("auc"), "logloss": mean("logloss"), "seconds": mean("seconds")}
    if len(runs) > 1:
        out["auc_range"] = f"{min(r['auc'] for r in runs):.4f}–{max(r['auc'] for r in runs):.4f}"
        out["lr"] = "/".join(str(r["lr"]) for r in runs)
        out["best_epoch"] = "/".join(str(r["best_epoch"]) for r in runs)
    return out


def fieldfm_run_seed(a, name, model, flags, train, valid, test, log, extra, seed):
    """Trains with --auto-stop on the hold-out; with --tune-lr (and --tune-decay), once per
    point of the grid, keeping the run with the best hold-out logloss (the test file is
    only read for the chosen model)."""
    best_run = None
    grid = [(lr, d) for lr in (a.tune_lr.split(",") if a.tune_lr else [None])
            for d in (a.tune_decay.split(",") if a.tune_decay else [None])]
    for lr, decay in grid:
        out_model = os.path.join(a.work, f"{name}.{model}.seed{seed}" + (f".r{lr}" if lr else "") +
                                 (f".d{decay}" if decay else "") + ".model")
        t0 = time.time()
        out = sh([a.fieldfm, "train", "-q", "--no-checkpoint", "-s", str(a.threads), "-t", str(a.epochs), "-p",
                  valid, "--auto-stop", "--seed", seed] + extra + flags + (["-r", lr] if lr else []) +
                 (["--lr-decay", decay] if decay else []) + [train, out_model], log)
        secs = time.time() - t0
        epochs = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        best = min(epochs, key=lambda e: e["va_logloss"])
        run = {"model": out_model, "va": best["va_logloss"], "best_epoch": best["epoch"], "seconds": secs,
               "lr": lr if decay is None else f"{lr}@{decay}"}
        if best_run is None or run["va"] < best_run["va"]:
            if best_run is not None:
                os.remove(best_run["model"])
            best_run = run
        else:
            os.remove(out_model)
    ev = json.loads(sh([a.fieldfm, "eval", "--json", best_run["model"], test], log))
    return {"logloss": ev["logloss"], "auc": ev["auc"], "seconds": best_run["seconds"],
            "best_epoch": best_run["best_epoch"], "lr": best_run["lr"] or "default"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fieldfm", default=os.path.join(REPO, "build/release/fieldfm"))
    ap.add_argument("--work", default="/tmp/fieldfm-accuracy")
    ap.add_argument("--sets", default="frappe,criteo8k,criteo_ffm,synth")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--synth-rows", type=int, default=1000000)
    ap.add_argument("--no-xgboost", action="store_true")
    ap.add_argument("--xgboost-min-count", type=int, default=10,
                    help="xgboost columns: features seen at least this often in training")
    ap.add_argument("--hidden", default="400", help="hidden sizes of the deep models' MLP (the synth table used 100)")
    ap.add_argument("--tune-lr", default="", help="e.g. 0.05,0.1,0.2: pick each model's -r on the hold-out")
    ap.add_argument("--tune-decay", default="", help="e.g. 1,0.5: --lr-decay values tried with each --tune-lr rate")
    ap.add_argument("--seeds", default="1", help="e.g. 1,2,3: one run per seed, means reported")
    a = ap.parse_args()
    for flags in MODELS.values():
        if "--hidden" in flags:
            flags[flags.index("--hidden") + 1] = a.hidden
    os.makedirs(a.work, exist_ok=True)
    log = os.path.join(a.work, "accuracy.log")
    rows = []
    for s in a.sets.split(","):
        w = lambda n: os.path.join(a.work, f"{s}.{n}")
        extra, floor = [], None
        if s == "frappe":
            split_holdout(os.path.join(SHARED, "frappe_nfm/frappe.validation.libfm"), w("train.libfm"), w("valid.libfm"))
            train, valid, test = w("train.libfm"), w("valid.libfm"), os.path.join(SHARED, "frappe_nfm/frappe.test.libfm")
            extra = ["--format", "libsvm", "--field-map", os.path.join(REPO, "tests/data/schemas/frappe_fields.txt")]
            fa = False
        elif s == "criteo8k":
            d = os.path.join(SHARED, "criteo_kaggle_8k")
            train, valid, test = f"{d}/train.tsv", f"{d}/dev.tsv", f"{d}/test.tsv"
            extra = ["--preset", "criteo", "--hash-bits", "16"]  # 7.2k rows: 2^16 buckets, not the 2^22 default
            fa = None  # raw TSV: no libsvm form for xgboost here
        elif s == "criteo_ffm":
            d = os.path.join(SHARED, "criteo_xlearn_ffm")
            split_holdout(f"{d}/small_train.txt", w("train.ffm"), w("valid.ffm"))
            train, valid, test = w("train.ffm"), w("valid.ffm"), f"{d}/small_test.txt"
            fa = True
        elif s == "synth":
            prefix = w("syn")
            if not os.path.exists(prefix + ".test.ffm"):
                sh([a.fieldfm, "synth", "-o", prefix, "--rows", str(a.synth_rows + a.synth_rows // 10), "--test-rows",
                    "200000", "--fields", "39", "--numeric", "13", "--seed", "3"], log)
                split_holdout(prefix + ".train.ffm", w("train.ffm"), w("valid.ffm"), every=11)
            train, valid, test = w("train.ffm"), w("valid.ffm"), prefix + ".test.ffm"
            floor = json.load(open(prefix + ".json"))["test"]["bayes_logloss"]
            fa = True
        else:
            sys.exit(f"unknown set {s}")
        for m in filter(None, a.models.split(",")):
            r = fieldfm_run(a, s, m, MODELS[m], train, valid, test, log, extra)
            rows.append((s, "fieldfm " + m, r, floor))
            print(rows[-1], flush=True)
        if not a.no_xgboost and fa is not None:
            paths = []
            cols = xgboost_columns(train, fa, a.xgboost_min_count)
            for src in (train, valid, test):
                dst = os.path.join(a.work, os.path.basename(src) + ".libsvm")
                to_libsvm(src, dst, fa, cols)
                paths.append(dst)
            r = xgboost(a.work, s, *paths, log, a.threads)
            rows.append((s, "xgboost", r, floor))
            print(rows[-1], flush=True)
    print("\n| data | model | test AUC | AUC range over seeds | test logloss | Bayes floor | -r | best epoch "
          "| train seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s, m, r, floor in rows:
        fl = f"{floor:.4f}" if floor else ""
        print(f"| {s} | {m} | {r['auc']:.4f} | {r.get('auc_range', '')} | {r['logloss']:.4f} | {fl} | {r.get('lr', '')} "
              f"| {r.get('best_epoch', '')} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
