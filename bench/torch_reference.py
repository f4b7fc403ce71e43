#!/usr/bin/python3
"""PyTorch CPU reference for the speed comparison in bench/RESULTS.md.

The recipe the issue names: sparse embedding tables trained with SparseAdam,
dense layers with Adam, batch 1024, N threads. Reads libffm files with one
feature per field (as `fieldfm synth` writes them). Prints one JSON line:
model, rows/s of training, test logloss and AUC after each epoch.
Needs Debian's python3-torch (bench only; not a fieldfm dependency).
"""
import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn as nn


def read_libffm(path, num_fields, limit=None):
    labels, idx = [], []
    with open(path) as f:
        for n, line in enumerate(f):
            if limit is not None and n >= limit:
                break
            tok = line.split()
            labels.append(1.0 if float(tok[0].split(":")[0]) > 0 else 0.0)
            row = [0] * num_fields
            for t in tok[1:]:
                fld, ix, _ = t.split(":")
                row[int(fld)] = int(ix)
            idx.append(row)
    return torch.tensor(labels, dtype=torch.float32), torch.tensor(idx, dtype=torch.int64)


def mlp(inp, hidden):
    layers, prev = [], inp
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.ReLU()]
        prev = h
    layers.append(nn.Linear(prev, 1))
    return nn.Sequential(*layers)


class Model(nn.Module):
    def __init__(self, kind, n_feat, F, k, hidden):
        super().__init__()
        self.kind, self.F, self.k = kind, F, k
        self.lin = nn.Embedding(n_feat, 1, sparse=True)
        nn.init.zeros_(self.lin.weight)
        self.bias = nn.Parameter(torch.zeros(1))
        aware = kind in ("ffm", "deepffm", "nffm")
        self.emb = nn.Embedding(n_feat, (F if aware else 1) * k, sparse=True)
        nn.init.normal_(self.emb.weight, std=0.01)
        iu = torch.triu_indices(F, F, offset=1)
        self.register_buffer("pi", iu[0])
        self.register_buffer("pj", iu[1])
        P = iu.shape[1]
        self.mlp = None
        if kind == "deepfm":
            self.mlp = mlp(F * k, hidden)
        elif kind == "nfm":
            self.mlp = mlp(k, hidden)
        elif kind == "deepffm":
            self.mlp = mlp(F * F * k, hidden)
        elif kind == "nffm":
            self.mlp = mlp(P * k, hidden)

    def forward(self, x):
        B = x.shape[0]
        out = self.bias + self.lin(x).sum(dim=(1, 2))
        if self.kind in ("ffm", "deepffm", "nffm"):
            e = self.emb(x).view(B, self.F, self.F, self.k)  # [b, feature's field, target field, k]
            left = e[:, self.pi, self.pj]
            right = e[:, self.pj, self.pi]
            prod = left * right
            if self.kind in ("ffm", "deepffm"):
                out = out + prod.sum(dim=(1, 2))
            if self.kind == "deepffm":
                out = out + self.mlp(e.reshape(B, -1)).squeeze(1)
            if self.kind == "nffm":
                out = out + self.mlp(prod.reshape(B, -1)).squeeze(1)
        else:
            e = self.emb(x)  # [b, F, k]
            s = e.sum(1)
            bi = 0.5 * (s * s - (e * e).sum(1))
            if self.kind in ("fm", "deepfm"):
                out = out + bi.sum(1)
            if self.kind == "deepfm":
                out = out + self.mlp(e.reshape(B, -1)).squeeze(1)
            if self.kind == "nfm":
                out = out + self.mlp(bi).squeeze(1)
        return out


def auc(p, y):
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    pos = y > 0.5
    npos, nneg = pos.sum(), (~pos).sum()
    return (ranks[pos].sum() - npos * (npos + 1) / 2) / (npos * nneg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("train")
    ap.add_argument("test")
    ap.add_argument("--model", default="ffm")
    ap.add_argument("--fields", type=int, default=39)
    ap.add_argument("-k", type=int, default=4)
    ap.add_argument("--hidden", default="100")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-rows", type=int, default=None, help="train on the first N rows only")
    ap.add_argument("--test-rows", type=int, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    ytr, xtr = read_libffm(a.train, a.fields, a.train_rows)
    yte, xte = read_libffm(a.test, a.fields, a.test_rows)
    n_feat = int(max(xtr.max(), xte.max())) + 1
    hidden = [int(h) for h in a.hidden.split(",") if h]
    model = Model(a.model, n_feat, a.fields, a.k, hidden)
    sparse = [model.lin.weight, model.emb.weight]
    dense = [p for n, p in model.named_parameters() if n not in ("lin.weight", "emb.weight")]
    opts = [torch.optim.SparseAdam(sparse, lr=a.lr)]
    if dense:
        opts.append(torch.optim.Adam(dense, lr=a.lr))
    lossf = nn.BCEWithLogitsLoss()
    for epoch in range(1, a.epochs + 1):
        perm = torch.randperm(len(ytr))
        t0 = time.time()
        model.train()
        for s in range(0, len(ytr), a.batch):
            b = perm[s:s + a.batch]
            for o in opts:
                o.zero_grad()
            loss = lossf(model(xtr[b]), ytr[b])
            loss.backward()
            for o in opts:
                o.step()
        secs = time.time() - t0
        model.eval()
        with torch.no_grad():
            p = torch.cat([torch.sigmoid(model(xte[s:s + 8192])) for s in range(0, len(yte), 8192)]).numpy()
        y = yte.numpy()
        pc = np.clip(p, 1e-15, 1 - 1e-15)
        ll = float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)))
        print(json.dumps({"tool": "pytorch", "model": a.model, "epoch": epoch, "threads": a.threads,
                          "rows_per_s": len(ytr) / secs, "test_logloss": ll, "test_auc": float(auc(p, y))}),
              flush=True)


if __name__ == "__main__":
    main()
