#!/usr/bin/env bash
# Issue 6: `valley surface` on the plane of a curve (two small mlps and the curve's
# middle point). 1, 2 and 4 groups give identical surface.nc values; a sweep stopped
# half-way (debug.surface_stop_after, exit 143) and restarted computes only the missing
# points and ends identical to an uninterrupted one; the endpoints sit at (0,0) and (1,0);
# the line basis over [0, 1] reproduces the curve evaluation's straight-line values; the
# precomputed first layer gives the direct computation's values to float rounding.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup surface_cmd
C=(--set data.train_subset=1000 --set data.test_subset=300 --set model.kind=mlp --set model.widths=32)
for s in 1 2; do
    "$VALLEY" train "${C[@]}" --set train.epochs=2 --set run.seed=$s --out "$dir/e$s" > "$dir/e$s.log" 2>&1 || fail "endpoint $s"
done
"$VALLEY" curve "$dir/e1/model.nc" "$dir/e2/model.nc" "${C[@]}" --set curve.epochs=2 --set curve.lr=0.05 --set curve.points=11 \
    --out "$dir/curve" > "$dir/curve.log" 2>&1 || fail "curve"
S=(surface "$dir/curve/curve.nc" "${C[@]}" --set surface.nx=7 --set surface.ny=6 --set surface.chunk=2)
for np in 1 2 4; do
    $MPIRUN -np $np "$VALLEY" "${S[@]}" --set parallel.group_size=1 --out "$dir/g$np" > "$dir/g$np.log" 2>&1 \
        || { tail "$dir/g$np.log"; fail "surface on $np groups"; }
done
for np in 2 4; do "$PYTHON" tests/py/nc_compare.py "$dir/g1/surface.nc" "$dir/g$np/surface.nc" || fail "1 vs $np groups"; done
# The mlp's first layer is precomputed per sample and combined per point: the direct
# computation (surface.precompute = false) agrees to float rounding.
grep -q "first layer (784 -> 32) precomputed" "$dir/g1.log" || fail "the first layer was not precomputed"
"$VALLEY" "${S[@]}" --set surface.precompute=false --out "$dir/direct" > "$dir/direct.log" 2>&1 || fail "direct surface"
grep -q "precomputed" "$dir/direct.log" && fail "surface.precompute=false still precomputed"
"$PYTHON" tests/py/nc_compare.py "$dir/g1/surface.nc" "$dir/direct/surface.nc" --tol 1e-5 --exclude deck \
    || fail "precomputed and direct surfaces differ"
status=0
$MPIRUN -np 2 "$VALLEY" "${S[@]}" --set parallel.group_size=1 --set debug.surface_stop_after=10 --out "$dir/r" > "$dir/r1.log" 2>&1 || status=$?
[[ $status -eq 143 ]] || { tail "$dir/r1.log"; fail "stopped sweep: status $status, want 143"; }
"$PYTHON" - "$dir/r/surface.nc" <<'PY' || fail "partial surface.nc"
import sys
from netCDF4 import Dataset
n = int(Dataset(sys.argv[1])["computed"][:].sum())
assert 10 <= n < 42, n
print("partial sweep:", n, "of 42 points")
PY
$MPIRUN -np 2 "$VALLEY" "${S[@]}" --set parallel.group_size=1 --out "$dir/r" > "$dir/r2.log" 2>&1 || fail "restarted sweep"
grep -q "the rest from the previous surface.nc" "$dir/r2.log" || fail "the restart recomputed everything"
"$PYTHON" tests/py/nc_compare.py "$dir/g1/surface.nc" "$dir/r/surface.nc" || fail "restarted sweep differs"
"$VALLEY" surface "$dir/e1/model.nc" "$dir/e2/model.nc" "${C[@]}" --set surface.basis=line --set surface.xmin=0 \
    --set surface.xmax=1 --set surface.nx=11 --out "$dir/line" > "$dir/line.log" 2>&1 || fail "line surface"
"$PYTHON" - "$dir" <<'PY' || fail "surface geometry"
import sys, numpy as np
from netCDF4 import Dataset
d = sys.argv[1]
s = Dataset(f"{d}/g1/surface.nc")
names = list(s["point_name"][:]); px, py = s["point_x"][:], s["point_y"][:]
assert abs(px[0]) < 1e-9 and abs(py[0]) < 1e-9 and abs(px[2] - 1) < 1e-6 and abs(py[2]) < 1e-6, (px, py)
assert abs(py[1] - 1) < 1e-6, py
assert s["curve_x"].shape[0] == 51 and abs(s["curve_x"][0]) < 1e-6 and abs(s["curve_x"][-1] - 1) < 1e-6
l, c = Dataset(f"{d}/line/surface.nc"), Dataset(f"{d}/curve/curve_eval.nc")
for q in ("train_loss", "train_err", "test_loss", "test_err"):
    a, b = l[q][0, :], c["line_" + q][:]
    assert np.abs(a - b).max() <= 1e-4 * max(1e-3, np.abs(b).max()), (q, a, b)
print("surface: endpoints at", list(zip(px.round(6), py.round(6))), "; line basis matches the curve's line")
PY
echo "surface_cmd: ok"
