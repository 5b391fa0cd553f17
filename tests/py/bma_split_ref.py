#!/usr/bin/env python3
"""NumPy/SciPy reference for tests/sh/bma_calib.sh: an mlp's bma.nc rows (sgd, swa, sgd-temp, swa-temp)
recomputed from the dataset file and the weights alone.

bma_split_ref.py DATA.nc MODEL.nc SWAG.nc BMA.nc S T V CLASSES

The mlp (fc1, fc2, fc3 with ReLU; dropout is the identity outside MC dropout) runs in float64 on
the inputs normalised as the file says ((pixel * pixel_scale - pixel_mean) / pixel_std). The data:
the first S training rows whose label is in CLASSES; their last V are the validation split; the
first T test rows, split by label into the test set (in CLASSES) and the held-out set (not).
Temperature: scipy's bounded Brent on log T of the mean validation NLL. Checks (relative 1e-5 for
values from logits, which valley computes in float32):
  temperature and validation NLL at T and at 1 of sgd-temp / swa-temp; test accuracy (within one
  image: a near-tie may flip), NLL and entropy of sgd, swa, sgd-temp, swa-temp; the held-out
  classes' mean entropy, their entropy histogram (20 bins on [0, log 10], within 2 images in all)
  and counts; the attributes n_test, n_validation, n_ood, classes, ood_classes.
"""
import sys

import numpy as np
from netCDF4 import Dataset
from scipy.optimize import minimize_scalar

data, model, swag, bma = sys.argv[1:5]
S, T, V = (int(a) for a in sys.argv[5:8])
classes = [int(c) for c in sys.argv[8].split(",")]

with Dataset(data) as f:
    scale, mean, std = (float(np.ravel(f.getncattr(a))[0]) for a in ("pixel_scale", "pixel_mean", "pixel_std"))
    xtr = np.asarray(f["train_x"][:S], np.float64).reshape(S, -1)
    ytr = np.asarray(f["train_y"][:S])
    xte = np.asarray(f["test_x"][:T], np.float64).reshape(T, -1)
    yte = np.asarray(f["test_y"][:T])
norm = lambda x: (x * scale - mean) / std
sel = np.isin(ytr, classes)
xv, yv = norm(xtr[sel][-V:]), ytr[sel][-V:]
kt = np.isin(yte, classes)
xt, yt, xo = norm(xte[kt]), yte[kt], norm(xte[~kt])


def weights(path):
    with Dataset(path) as f:
        return [np.asarray(f[n][:], np.float64) for n in ("fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias",
                                                           "fc3_weight", "fc3_bias")]


def logits(w, x):
    h = np.maximum(x @ w[0].T + w[1], 0)
    h = np.maximum(h @ w[2].T + w[3], 0)
    return h @ w[4].T + w[5]


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def nll(z, y, t=1.0):
    a = z / t
    m = a.max(axis=1)
    return float(np.mean(m + np.log(np.exp(a - m[:, None]).sum(axis=1)) - a[np.arange(len(y)), y]))


def entropy(p):
    return -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)).sum(axis=1)


b = Dataset(bma)
names = list(b["method_name"][:])
row = {n: i for i, n in enumerate(names)}
fails = []


def close(what, got, want, rtol=1e-5):
    ok = abs(got - want) <= rtol * max(abs(want), 1e-12)
    print("%-34s valley %.10g  numpy %.10g%s" % (what, got, want, "" if ok else "   <-- differs"))
    if not ok:
        fails.append(what)


for method, path in (("sgd", model), ("swa", swag)):
    w = weights(path)
    zv, zt, zo = logits(w, xv), logits(w, xt), logits(w, xo)
    r = row[method]
    acc = float(np.mean(zt.argmax(axis=1) == yt))
    close(method + " accuracy", float(b["accuracy"][r]), acc, rtol=1.01 / len(yt))
    close(method + " nll", float(b["nll"][r]), nll(zt, yt))
    close(method + " entropy", float(b["entropy"][r]), float(entropy(softmax(zt)).mean()))
    h = entropy(softmax(zo))
    close(method + " held-out entropy", float(b["ood_entropy"][r]), float(h.mean()))
    counts = np.bincount(np.clip(np.floor(h / np.log(10) * 20), 0, 19).astype(int), minlength=20)
    got = np.asarray(b["ood_entropy_count"][r], np.int64)
    print("%-34s valley %s\n%-34s numpy  %s" % (method + " held-out histogram", got.tolist(), "", counts.tolist()))
    if got.sum() != len(xo) or np.abs(got - counts).sum() > 2:
        fails.append(method + " held-out histogram")
    res = minimize_scalar(lambda u: nll(zv, yv, np.exp(u)), bounds=(np.log(1e-4), np.log(1e4)), method="bounded",
                          options={"xatol": 1e-10})
    t = float(np.exp(res.x))
    r = row[method + "-temp"]
    close(method + "-temp temperature", float(b["temperature"][r]), t)
    close(method + "-temp validation nll", float(b["validation_nll"][r]), nll(zv, yv, t))
    close(method + "-temp validation nll T=1", float(b["validation_nll_t1"][r]), nll(zv, yv))
    close(method + "-temp test nll", float(b["nll"][r]), nll(zt, yt, t))
    close(method + "-temp held-out entropy", float(b["ood_entropy"][r]), float(entropy(softmax(zo / t)).mean()))
for m in ("sgd", "swa", "swag", "sgd-drop", "swa-drop"):
    if m in row and not np.isnan(b["temperature"][row[m]]):
        fails.append(m + " has a temperature")
attrs = (int(b.n_test), int(b.n_validation), int(b.n_ood), b.classes, b.ood_classes)
want = (len(yt), V, len(xo), ",".join(map(str, sorted(classes))),
        ",".join(str(c) for c in range(10) if c not in classes))
print("attributes", attrs, "want", want)
if attrs != want:
    fails.append("attributes")
if fails:
    print("FAILED:", ", ".join(fails))
    sys.exit(1)
