#!/usr/bin/env bash
# Issue 18: KFAC-Laplace in `valley bma` (laplace-sgd, laplace-swa) on the convnet (BN, and the
# input conv its BN recomputes, which the K-FAC pass stores instead).
#  - 1, 2 and 4 ranks in one group: the factors are sums over the training data reduced over
#    the ranks (BN statistics of the global batch), the draws come from streams of the sample
#    number: NLL equal to 1e-4 relative and accuracy to one test image in 300 (outputs are
#    continuous in the weights, so a summation-order difference moves them by rounding only);
#  - 2 groups of 1 rank against 1 rank: each sample computed whole by one group: bit-identical;
#  - a prior precision of 1e12 pins every draw to the point estimate (closed form): laplace-sgd
#    must then give the NLL and accuracy of the SGD model with its BN refreshed (each draw's BN
#    is: `valley evaluate --set eval.bn_refresh=true`), laplace-swa those of swa (whose BN
#    swag.nc holds refreshed);
#  - with data.validation the prior precision is fitted: the log lists the 9 grid values with
#    their validation NLL, the one chosen is the argmin, and bma.nc records it;
#  - a negative prior precision: exit 2 naming the key, no bma.nc.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup laplace_ranks
common=(--set data.train_subset=512 --set data.test_subset=300 --set model.kind=convnet --set run.seed=3)
"$VALLEY" train "${common[@]}" --set train.epochs=2 --set train.swag=true --set train.swa_start=1 --set train.swa_freq=4 \
    --out "$dir/train" > "$dir/train.log" 2>&1 || { tail "$dir/train.log"; fail "train"; }
bma=(bma "$dir/train/swag.nc" "$dir/train/model.nc" "${common[@]}" --set bma.samples=3
     --set "bma.methods=sgd,swa,laplace-sgd,laplace-swa")
for np in 1 2 4; do
    $MPIRUN -np $np "$VALLEY" "${bma[@]}" --out "$dir/r$np" > "$dir/r$np.log" 2>&1 || { tail "$dir/r$np.log"; fail "bma on $np ranks"; }
done
grep -q "laplace: K-FAC factors of 4 layers over 512 training samples; prior precision 0.256 (training samples x train.wd: not fitted" \
    "$dir/r1.log" || { grep laplace "$dir/r1.log"; fail "the factors' log line"; }
$MPIRUN -np 2 "$VALLEY" "${bma[@]}" --set parallel.group_size=1 --out "$dir/g2" > "$dir/g2.log" 2>&1 || { tail "$dir/g2.log"; fail "bma 2 groups"; }
"$PYTHON" tests/py/nc_compare.py "$dir/r1/bma.nc" "$dir/g2/bma.nc" || fail "bma.nc differs between 1 rank and 2 groups of 1"
"$VALLEY" "${bma[@]}" --set laplace.prior_precision=1e12 --out "$dir/pin" > "$dir/pin.log" 2>&1 || { tail "$dir/pin.log"; fail "bma, prior 1e12"; }
"$VALLEY" evaluate "$dir/train/model.nc" "${common[@]}" --set eval.bn_refresh=true --out "$dir/ev" > "$dir/ev.log" 2>&1 \
    || { tail "$dir/ev.log"; fail "evaluate with BN refresh"; }
"$PYTHON" - "$dir" <<'PY' || fail "bma.nc values"
import sys
from netCDF4 import Dataset
d = sys.argv[1]
def load(sub):
    with Dataset(f"{d}/{sub}/bma.nc") as f:
        names = list(f["method_name"][:])
        return {n: (float(f["nll"][i]), float(f["accuracy"][i]), int(f["n_samples"][i])) for i, n in enumerate(names)}
r = {np: load(f"r{np}") for np in (1, 2, 4)}
assert list(r[1]) == ["sgd", "swa", "laplace-sgd", "laplace-swa"], list(r[1])
assert r[1]["laplace-sgd"][2] == 3 and r[1]["laplace-swa"][2] == 3
for np in (2, 4):
    for m in r[1]:
        a, b = r[np][m], r[1][m]
        assert abs(a[0] - b[0]) <= 1e-4 * abs(b[0]), (np, m, "nll", a[0], b[0])
        assert abs(a[1] - b[1]) <= 1 / 300 + 1e-12, (np, m, "accuracy", a[1], b[1])
# the draws move the predictions: the Laplace methods are not the point estimates themselves
assert abs(r[1]["laplace-sgd"][0] - r[1]["sgd"][0]) > 1e-6, r[1]
pin = load("pin")
with Dataset(f"{d}/ev/eval.nc") as f:
    pin["sgd-refreshed"] = (float(f["nll"][...]), float(f["accuracy"][...]), 1)
for lap, point in (("laplace-sgd", "sgd-refreshed"), ("laplace-swa", "swa")):
    assert abs(pin[lap][0] - pin[point][0]) <= 1e-4 * pin[point][0], (lap, pin[lap], pin[point])
    assert abs(pin[lap][1] - pin[point][1]) <= 1 / 300 + 1e-12, (lap, pin[lap], pin[point])
print("nll 1 rank:", {m: round(v[0], 5) for m, v in r[1].items()}, "| pinned:", {m: round(v[0], 5) for m, v in pin.items()})
PY
"$VALLEY" train "${common[@]}" --set data.validation=128 --set train.epochs=2 --out "$dir/trainv" > "$dir/trainv.log" 2>&1 \
    || { tail "$dir/trainv.log"; fail "train with a validation split"; }
"$VALLEY" bma "$dir/trainv/model.nc" "${common[@]}" --set data.validation=128 --set bma.samples=2 --set bma.methods=sgd,laplace-sgd \
    --set laplace.fit_samples=2 --out "$dir/fit" > "$dir/fit.log" 2>&1 || { tail "$dir/fit.log"; fail "bma with a fitted prior"; }
"$PYTHON" - "$dir/fit.log" "$dir/fit/bma.nc" <<'PY' || fail "the prior fit"
import re, sys
from netCDF4 import Dataset
log = open(sys.argv[1]).read()
grid = [(float(t), float(n)) for t, n in re.findall(r"laplace: prior precision (\S+)\s+validation nll (\S+)", log)]
assert len(grid) == 9, grid
assert abs(grid[1][0] - 384 * 5e-4) < 1e-9 * grid[1][0], grid   # tau0 = n_train x train.wd, k = 0
for (a, _), (b, _) in zip(grid, grid[1:]):
    assert abs(b / a - 10) < 1e-9, grid
best = min(grid, key=lambda g: g[1])
m = re.search(r"prior precision (\S+) \(fitted on 128 validation images: nll (\S+)\)", log)
assert m and float(m.group(1)) == best[0] and abs(float(m.group(2)) - best[1]) < 1e-5, (m and m.groups(), best)
with Dataset(sys.argv[2]) as f:
    f.set_auto_mask(False)
    names = list(f["method_name"][:])
    pp = [float(v) for v in f["prior_precision"][:]]
assert abs(pp[names.index("laplace-sgd")] - best[0]) <= 1e-6 * best[0], (pp, best)
assert pp[names.index("sgd")] != pp[names.index("sgd")], pp  # NaN: sgd has no prior
print("fitted prior precision", best, "of", [round(n, 4) for _, n in grid])
PY
set +e
"$VALLEY" "${bma[@]}" --set laplace.prior_precision=-1 --out "$dir/bad" > "$dir/bad.log" 2>&1
code=$?
set -e
[[ $code -eq 2 ]] || { cat "$dir/bad.log"; fail "a negative laplace.prior_precision exited $code, want 2"; }
grep -q "laplace.prior_precision" "$dir/bad.log" || { cat "$dir/bad.log"; fail "the message does not name laplace.prior_precision"; }
[[ ! -e $dir/bad/bma.nc ]] || fail "bma.nc written despite the bad deck"
echo "laplace_ranks: OK"
