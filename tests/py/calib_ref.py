#!/usr/bin/env python3
"""Independent references for tests/unit/test_calib.c (temperature scaling, entropy histogram).

calib_ref.py FILE reads FILE, written by test_calib:
    int64 N, C; float32 logits (N, C); int32 labels (N)
    int64 M, K, NBINS; float32 probs (M, K)
and prints "name value" lines (%.17g):
    T_brent    scipy.optimize.minimize_scalar (bounded Brent) of the mean NLL of
               softmax(logits / T) over u = log T in [log 1e-4, log 1e4], xatol 1e-11
    T_root     scipy.optimize.brentq on the analytic derivative dNLL/du (numpy), bracketed
               by its sign change on a grid of 161 values of u over the whole range; xtol 1e-14
    T_grid     the point of smallest NLL on a grid of spacing 0.001 in u, +-0.2 around T_root
    nll        mean NLL at T_root; nll_t1 at T = 1
    ent_mean   mean entropy -sum p log p (p > 0) of the probs rows, float64
    ent_bin_b  histogram of the entropies: bin floor(H / log K * NBINS) clipped to 0..NBINS-1
Everything in float64 on the float32 inputs.
"""
import sys

import numpy as np
from scipy.optimize import brentq, minimize_scalar

path = sys.argv[1]
with open(path, "rb") as f:
    n, c = np.fromfile(f, np.int64, 2)
    z = np.fromfile(f, np.float32, n * c).reshape(n, c).astype(np.float64)
    y = np.fromfile(f, np.int32, n).astype(np.int64)
    m, k, nbins = np.fromfile(f, np.int64, 3)
    p = np.fromfile(f, np.float32, m * k).reshape(m, k).astype(np.float64)
rows = np.arange(n)


def nll(u):
    a = np.exp(-u) * z
    mx = a.max(axis=1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(a - mx).sum(axis=1))
    return float(np.mean(lse - a[rows, y]))


def grad(u):
    b = np.exp(-u)
    a = b * z
    e = np.exp(a - a.max(axis=1, keepdims=True))
    q = e / e.sum(axis=1, keepdims=True)
    return float(b * np.mean(z[rows, y] - (q * z).sum(axis=1)))


lo, hi = np.log(1e-4), np.log(1e4)
res = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-11, "maxiter": 2000})
grid = np.linspace(lo, hi, 161)
g = np.array([grad(u) for u in grid])
change = np.nonzero((g[:-1] < 0) & (g[1:] >= 0))[0]
assert len(change) == 1, f"derivative changes sign {len(change)} times"
i = change[0]
root = brentq(grad, grid[i], grid[i + 1], xtol=1e-14, rtol=4 * np.finfo(float).eps)
grid = np.linspace(root - 0.2, root + 0.2, 401)  # spacing 0.001 in u around the root
vals = np.array([nll(u) for u in grid])
print("T_brent %.17g" % np.exp(res.x))
print("T_root %.17g" % np.exp(root))
print("T_grid %.17g" % np.exp(grid[np.argmin(vals)]))
print("nll %.17g" % nll(root))
print("nll_t1 %.17g" % nll(0.0))
with np.errstate(divide="ignore", invalid="ignore"):
    h = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
print("ent_mean %.17g" % h.mean())
b = np.clip(np.floor(h / np.log(k) * nbins), 0, nbins - 1).astype(int)
for j, cnt in enumerate(np.bincount(b, minlength=nbins)):
    print("ent_bin_%d %d" % (j, cnt))
