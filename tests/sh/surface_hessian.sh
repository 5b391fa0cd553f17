#!/usr/bin/env bash
# Issue 19: surface.hessian = true adds the Hessian's extreme eigenvalues per grid point.
#  - an mlp (no BN: the point's refresh changes nothing) on the line between two runs, x = 0, 0.5, 1:
#    at x = 0 the point is the first model itself, so hessian_max there must equal `valley hessian`'s
#    largest eigenvalue of that model (other start vector) within the two residual bounds + 1e-5;
#  - 2 groups of 1 rank against 1 rank: each point computed whole by one group: surface.nc bit-identical;
#  - a sweep stopped after one point (debug.surface_stop_after) and run again computes the rest: the
#    same file as the uninterrupted sweep; asking for the maps in the directory of a finished sweep
#    without them is refused (exit 2, naming the key) like any other change of its deck.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup surface_hessian
common=(--set data.train_subset=512 --set data.test_subset=100 --set model.kind=mlp --set model.widths=32)
for s in 1 2; do
    "$VALLEY" train "${common[@]}" --set run.seed=$s --set train.epochs=1 --out "$dir/m$s" > "$dir/m$s.log" 2>&1 \
        || { tail "$dir/m$s.log"; fail "train $s"; }
done
hs=(--set hessian.samples=256 --set hessian.steps=24)
surf=(surface "$dir/m1/model.nc" "$dir/m2/model.nc" "${common[@]}" "${hs[@]}" --set surface.basis=line --set surface.nx=3
      --set surface.xmin=0 --set surface.xmax=1 --set surface.hessian=true)
"$VALLEY" "${surf[@]}" --out "$dir/s1" > "$dir/s1.log" 2>&1 || { tail "$dir/s1.log"; fail "surface 1 rank"; }
grep -q "with the Hessian's extreme eigenvalues" "$dir/s1.log" || fail "no Hessian line in the log"
$MPIRUN -np 2 "$VALLEY" "${surf[@]}" --set parallel.group_size=1 --out "$dir/s2" > "$dir/s2.log" 2>&1 || { tail "$dir/s2.log"; fail "surface 2 groups"; }
"$PYTHON" tests/py/nc_compare.py "$dir/s1/surface.nc" "$dir/s2/surface.nc" || fail "1 rank vs 2 groups of 1"
"$VALLEY" hessian "$dir/m1/model.nc" "${common[@]}" "${hs[@]}" --set hessian.probes=1 --out "$dir/h" > "$dir/h.log" 2>&1 \
    || { tail "$dir/h.log"; fail "hessian"; }
"$PYTHON" - "$dir" <<'PY' || fail "surface maps"
import sys
import numpy as np
from netCDF4 import Dataset
d = sys.argv[1]
with Dataset(f"{d}/s1/surface.nc") as f:
    mx, mxr = np.array(f["hessian_max"][0, :], float), np.array(f["hessian_max_residual"][0, :], float)
    mn = np.array(f["hessian_min"][0, :], float)
    assert np.all(np.isfinite(mx)) and np.all(np.isfinite(mn)) and np.all(mn <= mx), (mx, mn)
with Dataset(f"{d}/h/hessian.nc") as f:
    top, topr = float(f["top_eigenvalues"][0]), float(f["top_residual"][0])
err = abs(mx[0] - top)
assert err <= mxr[0] + topr + 1e-5 * abs(top), (mx[0], mxr[0], top, topr)
print(f"hessian_max along the line {mx}, at x = 0 {mx[0]:.8g} vs valley hessian {top:.8g} (bounds {mxr[0]:.2g}, {topr:.2g})")
PY
"$VALLEY" "${surf[@]}" --set debug.surface_stop_after=1 --set surface.chunk=1 --out "$dir/s3" > "$dir/s3.log" 2>&1 && fail "the stopped sweep exited 0"
"$VALLEY" "${surf[@]}" --out "$dir/s3" > "$dir/s3b.log" 2>&1 || { tail "$dir/s3b.log"; fail "the resumed sweep"; }
grep -q "2 point(s) to compute" "$dir/s3b.log" || { grep "point(s)" "$dir/s3b.log"; fail "the resumed sweep did not take the first point"; }
"$PYTHON" tests/py/nc_compare.py "$dir/s1/surface.nc" "$dir/s3/surface.nc" || fail "the resumed sweep differs"
"$VALLEY" "${surf[@]}" --set surface.hessian=false --out "$dir/s4" > "$dir/s4.log" 2>&1 || fail "surface without maps"
set +e
"$VALLEY" "${surf[@]}" --out "$dir/s4" > "$dir/s4b.log" 2>&1
st=$?
set -e
[[ $st -eq 2 ]] && grep -q "surface.hessian: false -> true" "$dir/s4b.log" || { cat "$dir/s4b.log"; fail "adding the maps to a finished sweep: exit $st"; }
echo "surface_hessian: ok"
