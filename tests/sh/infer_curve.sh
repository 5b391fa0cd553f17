#!/usr/bin/env bash
# Issue 8: `valley infer curve.nc` — the curve subspace of SPEC §2 (shift = mean of w0,
# w(1/2), w2; u = (w2 − w0)/√3; v = (w(1/2) − w0, orthogonalised against u)/1.5), checked
# against NumPy: with the subspace rebuilt from curve.nc's control points, every sample's
# tempered log-likelihood −Σ CE / T over the training subset (T = N/10) equals
# sample_loglik, and the `curve-centre` row (the shift) has the accuracy and NLL that NumPy
# computes on the test subset. Fashion-MNIST subsets, an mlp (no BN), two endpoints
# trained at once in two groups, a 1-epoch Bezier curve.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup infer_curve
common=(--set data.train_subset=512 --set data.test_subset=200 --set model.kind=mlp --set model.widths=32)
$MPIRUN -np 2 "$VALLEY" train "${common[@]}" --set train.epochs=2 --set parallel.group_size=1 --out "$dir/ends" > "$dir/train.log" 2>&1 \
    || { tail "$dir/train.log"; fail "train endpoints"; }
"$VALLEY" curve "$dir/ends/group_0/model.nc" "$dir/ends/group_1/model.nc" "${common[@]}" --set curve.epochs=1 --set curve.points=3 \
    --out "$dir/curve" > "$dir/curve.log" 2>&1 || { tail "$dir/curve.log"; fail "curve"; }
"$VALLEY" infer "$dir/curve/curve.nc" "${common[@]}" --set infer.samples=4 --set infer.burnin=2 --out "$dir/infer" > "$dir/infer.log" 2>&1 \
    || { tail "$dir/infer.log"; fail "infer curve.nc"; }
rc=0
"$VALLEY" infer "$dir/curve/curve.nc" "${common[@]}" --set infer.rank=3 --out "$dir/bad" > "$dir/bad.log" 2>&1 || rc=$?
[[ $rc -eq 2 ]] && grep -q "curve subspace has k = 2" "$dir/bad.log" || { cat "$dir/bad.log"; fail "infer.rank = 3 on a curve: exit $rc"; }
"$PYTHON" - "$dir/infer/infer.nc" "$dir/curve/curve.nc" input/data/fashion-mnist.nc <<'PY' || fail "curve subspace against numpy"
import sys
import numpy as np
from netCDF4 import Dataset
inf, cv, data = (Dataset(p) for p in sys.argv[1:4])
assert inf.subspace_kind == "curve" and list(inf["method_name"][:]) == ["curve-ess", "curve-centre"], list(inf["method_name"][:])
th = np.asarray(cv["control_points"][:], float)
w0, w2 = th[0], th[-1]
wm = 0.25 * th[0] + 0.5 * th[1] + 0.25 * th[2]          # Bezier at t = 1/2
shift = (w0 + wm + w2) / 3
u = w2 - w0
v = (wm - w0) - (wm - w0) @ u / (u @ u) * u
P = np.stack([u / np.sqrt(3), v / 1.5])
def xy(split, n):
    x = np.asarray(data[split + "_x"][:n], float).reshape(n, -1) * float(data.pixel_scale)
    return (x - float(data.pixel_mean)) / float(data.pixel_std), np.asarray(data[split + "_y"][:n])
X, y = xy("train", 512)
Xt, yt = xy("test", 200)
def logits(w, x):  # mlp 784-32-10, PyTorch layout (out, in)
    W1 = w[:32 * 784].reshape(32, 784); b1 = w[32 * 784:32 * 785]; o = 32 * 785
    W2 = w[o:o + 320].reshape(10, 32); b2 = w[o + 320:o + 330]
    assert o + 330 == len(w)
    return np.maximum(x @ W1.T + b1, 0) @ W2.T + b2
def logp(w, x):
    l = logits(w, x); l = l - l.max(1, keepdims=True)
    return l - np.log(np.exp(l).sum(1, keepdims=True))
T = float(inf.temperature)
assert abs(T - 51.2) < 1e-9, T
z = np.asarray(inf["z"][:], float)
ll = np.array([logp(shift + zz @ P, X)[np.arange(512), y].sum() / T for zz in z])
err = np.abs(ll - np.asarray(inf["sample_loglik"][:])).max()
print("curve subspace: sample log-likelihoods", ll.round(4), "max |numpy - valley|", err)
assert err < 1e-4 * np.abs(ll).max() + 1e-6, err
lp = logp(shift, Xt)
acc = (lp.argmax(1) == yt).mean(); nll = -lp[np.arange(200), yt].mean()
a1, n1 = float(inf["accuracy"][1]), float(inf["nll"][1])
print("curve centre: accuracy %.4f (valley %.4f), nll %.5f (valley %.5f)" % (acc, a1, nll, n1))
assert abs(acc - a1) < 1e-9 and abs(nll - n1) < 1e-4, (acc, a1, nll, n1)
PY
echo "infer_curve: ok"
