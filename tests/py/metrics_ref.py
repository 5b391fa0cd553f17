#!/usr/bin/env python3
"""NumPy reference for src/metrics.c, used by tests/unit/test_metrics.c --numpy.

Usage: metrics_ref.py FILE

FILE (little-endian, written by test_metrics):
    int64 n, int64 C,
    float32 logits[n, C], float32 softmax[n, C], float32 log_softmax[n, C]
        (the last two computed by metrics_softmax / metrics_log_softmax),
    float32 probs[n, C], int32 labels[n],
    int64 m, float32 mu[m], float32 sigma[m], float32 y[m].

Prints one "name value" line per metric (arrays as name[i]), values as %.17g,
computed here independently with vectorised NumPy in float64 from the
definitions in include/valley/metrics.h, plus the largest deviation of the C
softmax / log-softmax from a float64 NumPy softmax of the same logits.
"""
import sys

import numpy as np

NB_WIDTH, NB_COUNT, P_MIN = 15, 20, 1e-12


def read(path):
    raw = open(path, "rb").read()
    off = 0

    def take(dtype, count):
        nonlocal off
        a = np.frombuffer(raw, dtype=dtype, count=count, offset=off)
        off += a.nbytes
        return a

    n, C = (int(v) for v in take("<i8", 2))
    logits = take("<f4", n * C).reshape(n, C)
    sm = take("<f4", n * C).reshape(n, C)
    lsm = take("<f4", n * C).reshape(n, C)
    probs = take("<f4", n * C).reshape(n, C)
    labels = take("<i4", n)
    (m,) = (int(v) for v in take("<i8", 1))
    mu, sigma, y = take("<f4", m), take("<f4", m), take("<f4", m)
    if off != len(raw):
        sys.exit(f"metrics_ref.py: {len(raw) - off} trailing bytes in {path}")
    return logits, sm, lsm, probs, labels, mu, sigma, y


def out(name, value):
    print(f"{name} {float(value):.17g}")


def reliability(conf, correct, bins, nbins, prefix):
    """Per-bin count, mean confidence, mean accuracy; ECE."""
    n = len(conf)
    count = np.bincount(bins, minlength=nbins)
    s_conf = np.bincount(bins, weights=conf, minlength=nbins)
    s_acc = np.bincount(bins, weights=correct, minlength=nbins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, s_conf / count, np.nan)
        mean_acc = np.where(count > 0, s_acc / count, np.nan)
    nz = count > 0
    ece = np.sum(count[nz] / n * np.abs(mean_acc[nz] - mean_conf[nz]))
    for b in range(nbins):
        out(f"{prefix}count[{b}]", count[b])
        out(f"{prefix}conf[{b}]", mean_conf[b])
        out(f"{prefix}acc[{b}]", mean_acc[b])
    return ece


def classification(probs, labels):
    p = probs.astype(np.float64)
    n, C = p.shape
    pred = np.argmax(p, axis=1)  # first maximum on ties
    conf = p[np.arange(n), pred]
    correct = (pred == labels).astype(np.float64)
    onehot = np.eye(C)[labels]
    py = p[np.arange(n), labels]
    nll = -np.log(np.maximum(py, P_MIN))
    brier = np.sum((p - onehot) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    entropy = -np.sum(plogp, axis=1)

    out("n", n)
    out("accuracy", correct.mean())
    out("error", 1.0 - correct.mean())
    out("nll", nll.mean())
    out("brier", brier.mean())
    out("entropy", entropy.mean())

    # equal-width: edges b/15, bin b holds edges[b] < conf <= edges[b+1]
    edges = np.arange(NB_WIDTH + 1) / NB_WIDTH
    wbin = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, NB_WIDTH - 1)
    for b in range(NB_WIDTH):
        out(f"bin_lo[{b}]", edges[b])
        out(f"bin_hi[{b}]", edges[b + 1])
    out("ece", reliability(conf, correct, wbin, NB_WIDTH, "bin_"))

    # equal-count: stable order by (confidence, index); position j goes to bin b
    # with bounds[b] <= j < bounds[b+1], bounds[b] = floor(b*n/20)
    order = np.lexsort((np.arange(n), conf))
    bounds = (np.arange(NB_COUNT + 1) * n) // NB_COUNT
    cbin = np.searchsorted(bounds, np.arange(n), side="right") - 1
    out("ece_count", reliability(conf[order], correct[order], cbin, NB_COUNT, "cbin_"))


def regression(mu, sigma, y):
    mu, sigma, y = (a.astype(np.float64) for a in (mu, sigma, y))
    d = y - mu
    loglik = -0.5 * np.log(2 * np.pi * sigma**2) - d**2 / (2 * sigma**2)
    out("reg_n", len(y))
    out("rmse", np.sqrt(np.mean(d**2)))
    out("loglik", loglik.mean())
    out("reg_nll", -loglik.mean())
    out("coverage95", np.mean(np.abs(d) <= 1.96 * sigma))
    out("mean_std", sigma.mean())


def softmax_check(logits, sm, lsm):
    x = logits.astype(np.float64)
    z = x - x.max(axis=1, keepdims=True)
    ref_lsm = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    out("softmax_err", np.max(np.abs(sm - np.exp(ref_lsm))))
    out("log_softmax_err", np.max(np.abs(lsm - ref_lsm) / np.maximum(1.0, np.abs(ref_lsm))))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    logits, sm, lsm, probs, labels, mu, sigma, y = read(sys.argv[1])
    classification(probs, labels)
    regression(mu, sigma, y)
    softmax_check(logits, sm, lsm)


if __name__ == "__main__":
    main()
