#!/usr/bin/env bash
# Issue 19: `valley hessian` (Lanczos over the group, SLQ runs over the groups) at 1, 2 and 4 ranks.
#  - one group of 1, 2 and 4 ranks: each product is a sum over the samples reduced over the group;
#    a sample's forward runs on its own GEMM / kernel columns (hvp.c), so its ReLU and pool decisions do not
#    depend on the rank count, and only the float summation order of the sums differs: the largest
#    eigenvalue, the smallest, the trace and every run's v^T H v agree to 1e-5 of the largest
#    eigenvalue's magnitude (a flipped decision would move them by orders more);
#  - 2 groups of 1 rank against 1 rank, 2 groups of 2 against 1 group of 2: each run is computed whole
#    by one group as that group alone would: hessian.nc bit-identical (but for the run times);
#  - the file: residual bounds present and non-negative, top eigenvalues descending, the density
#    integrates to 1, the trace equals P x the quadrature's first moment (mean of sum w theta over
#    the runs), the statement of what Hessian it is;
#  - bad uses exit 2 without a file: hessian.top > hessian.steps, two inputs, a missing file.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup hessian_ranks
common=(--set data.train_subset=384 --set data.test_subset=100 --set model.kind=convnet --set run.seed=4)
"$VALLEY" train "${common[@]}" --set train.epochs=1 --set train.batch_size=64 --out "$dir/train" > "$dir/train.log" 2>&1 \
    || { tail "$dir/train.log"; fail "train"; }
h=(hessian "$dir/train/model.nc" "${common[@]}" --set train.batch_size=64 --set hessian.samples=320 --set hessian.steps=10
   --set hessian.probes=4 --set hessian.top=3)
for np in 1 2 4; do
    $MPIRUN -np $np "$VALLEY" "${h[@]}" --out "$dir/r$np" > "$dir/r$np.log" 2>&1 || { tail "$dir/r$np.log"; fail "hessian on $np ranks"; }
done
$MPIRUN -np 2 "$VALLEY" "${h[@]}" --set parallel.group_size=1 --out "$dir/g2x1" > "$dir/g2x1.log" 2>&1 || { tail "$dir/g2x1.log"; fail "2 groups of 1"; }
$MPIRUN -np 4 "$VALLEY" "${h[@]}" --set parallel.group_size=2 --out "$dir/g2x2" > "$dir/g2x2.log" 2>&1 || { tail "$dir/g2x2.log"; fail "2 groups of 2"; }
"$PYTHON" tests/py/nc_compare.py "$dir/r1/hessian.nc" "$dir/g2x1/hessian.nc" --exclude run_seconds || fail "1 rank vs 2 groups of 1"
"$PYTHON" tests/py/nc_compare.py "$dir/r2/hessian.nc" "$dir/g2x2/hessian.nc" --exclude run_seconds || fail "2 ranks vs 2 groups of 2"
grep -q "lambda_1 = " "$dir/r1.log" || fail "no eigenvalue table in the log"
"$PYTHON" - "$dir" <<'PY' || fail "hessian.nc values"
import sys
import numpy as np
from netCDF4 import Dataset
d = sys.argv[1]
def load(sub):
    with Dataset(f"{d}/{sub}/hessian.nc") as f:
        r = {k: np.array(f[k][...], dtype=float) for k in ("top_eigenvalues", "top_residual", "min_eigenvalue", "min_residual",
             "trace", "trace_h2", "quadratic_form", "density", "density_x", "ritz", "ritz_weight", "steps_done")}
        r["of"] = f.getncattr("hessian_of")
        r["P"] = float(f.getncattr("parameters"))
        return r
r = {np_: load(f"r{np_}") for np_ in (1, 2, 4)}
a = r[1]
scale = abs(a["top_eigenvalues"][0])
assert scale > 0 and np.all(np.diff(a["top_eigenvalues"]) <= 0), a["top_eigenvalues"]
assert np.all(a["top_residual"] >= 0) and a["min_residual"] >= 0
assert "first 320 samples" in a["of"] and "evaluation mode" in a["of"] and "no weight-decay" in a["of"], a["of"]
for np_ in (2, 4):
    b = r[np_]
    for k in ("top_eigenvalues", "min_eigenvalue", "quadratic_form"):
        err = np.max(np.abs(b[k] - a[k]))
        lim = 1e-5 * (scale if k != "quadratic_form" else np.max(np.abs(a[k])))
        assert err <= lim, (np_, k, b[k], a[k])
    assert abs(b["trace"] - a["trace"]) <= 1e-5 * abs(a["trace"]), (np_, b["trace"], a["trace"])
dx = a["density_x"][1] - a["density_x"][0]
mass = a["density"].sum() * dx
assert abs(mass - 1) < 1e-3, mass
m1 = np.nanmean(np.nansum(a["ritz"] * a["ritz_weight"], axis=1))
assert abs(m1 * a["P"] - a["trace"]) <= 1e-8 * abs(a["trace"]) + 1e-12, (m1 * a["P"], a["trace"])
print("top", a["top_eigenvalues"], "min", float(a["min_eigenvalue"]), "trace", float(a["trace"]), "density mass", mass)
PY
for bad in "--set hessian.top=20" "$dir/train/model.nc" "--set data.path=$dir/nothere.nc"; do
    set +e
    # shellcheck disable=SC2086
    "$VALLEY" "${h[@]}" $bad --out "$dir/bad" > "$dir/bad.log" 2>&1
    st=$?
    set -e
    [[ $st -eq 2 ]] || { cat "$dir/bad.log"; fail "'$bad': exit $st, want 2"; }
    [[ ! -e $dir/bad/hessian.nc ]] || fail "'$bad' left a hessian.nc"
    head -c 300 "$dir/bad.log"; echo
done
"$VALLEY" hessian "$dir/nothere.nc" --out "$dir/bad2" > "$dir/bad2.log" 2>&1 && fail "a missing model file was accepted"
grep -q "nothere.nc" "$dir/bad2.log" || { cat "$dir/bad2.log"; fail "the message does not name the file"; }
echo "hessian_ranks: ok"
