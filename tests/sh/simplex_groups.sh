#!/usr/bin/env bash
# Issue 9: SPRO / ESPRO / complexes on a tiny mlp (Fashion-MNIST subset).
#  - ESPRO with 2 components over 1 group (1 rank) and over 2 groups (2 ranks,
#    group_size 1) gives a bit-identical simplex.nc;
#  - frozen vertices never move: the base vertex of every component is model.nc bit for
#    bit, and so are the modes of a complex;
#  - the stored volumes, the plane coordinates of the vertices and the ensemble's NLL agree
#    with numpy recomputed from the stored vertices / weights / per-point values;
#  - a NaN injected into one step's loss ends the run with exit 3 and no simplex.nc.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup simplex_groups
C=(--set data.train_subset=1000 --set data.test_subset=400 --set model.kind=mlp --set model.widths=32)
for s in 1 2; do
    "$VALLEY" train "${C[@]}" --set train.epochs=2 --set run.seed=$s --out "$dir/e$s" > "$dir/e$s.log" 2>&1 \
        || { tail "$dir/e$s.log"; fail "train $s"; }
done
S=(simplex "$dir/e1/model.nc" "${C[@]}" --set simplex.epochs=2 --set simplex.samples=2 --set simplex.eval_samples=3
   --set simplex.components=2 --set simplex.lr=0.05 --set simplex.grid=3)
$MPIRUN -np 1 "$VALLEY" "${S[@]}" --out "$dir/g1" > "$dir/g1.log" 2>&1 || { tail -20 "$dir/g1.log"; fail "simplex 1 group"; }
$MPIRUN -np 2 "$VALLEY" "${S[@]}" --set parallel.group_size=1 --out "$dir/g2" > "$dir/g2.log" 2>&1 \
    || { tail -20 "$dir/g2.log"; fail "simplex 2 groups"; }
"$PYTHON" tests/py/nc_compare.py "$dir/g1/simplex.nc" "$dir/g2/simplex.nc" || fail "simplex.nc differs between 1 and 2 groups"
"$PYTHON" - "$dir/g1/simplex.nc" "$dir/e1/model.nc" <<'PY' || fail "simplex.nc content"
import sys, math, numpy as np
from netCDF4 import Dataset
s, m = Dataset(sys.argv[1]), Dataset(sys.argv[2])
names = m.getncattr("valley.params").split(",")
base = np.concatenate([m[n][:].ravel() for n in names]).astype(np.float32)
V = np.asarray(s["vertices"][:], dtype=np.float32)
assert V.shape == (6, base.size), V.shape                      # 2 components x 3 vertices
assert list(s["vertex_component"][:]) == [0, 0, 0, 1, 1, 1]
assert list(s["vertex_fixed"][:]) == [1, 0, 0, 1, 0, 0]
for c in (0, 3):
    assert (V[c] == base).all(), f"base vertex {c} moved"
assert not (V[1] == V[4]).all(), "both components trained the same vertex (seeds not per component?)"
SV = np.asarray(s["simplex_vertices"][:])
assert SV.tolist() == [[0, 1, 2], [3, 4, 5]], SV
# volume: Heron's formula on float64 edge lengths, independent of Cayley-Menger
for k, idx in enumerate(SV):
    p = V[idx].astype(np.float64)
    a, b, c = (np.linalg.norm(p[i] - p[j]) for i, j in ((0, 1), (1, 2), (0, 2)))
    h = (a + b + c) / 2
    area = math.sqrt(max(h * (h - a) * (h - b) * (h - c), 0.0))
    vol = float(s["volume"][k])
    assert abs(vol - area) <= 1e-6 * area + 1e-12, (k, vol, area)
    assert vol > 1e-3 * a * b, f"simplex {k} is flat: volume {vol}, edges {a} {b} {c}"
    assert abs(float(s["volume_squared"][k]) - vol * vol) <= 1e-9 * vol * vol
# Dirichlet weights on the simplex
W = np.asarray(s["point_weights"][:])
assert W.shape == (6, 3) and (W > 0).all() and np.allclose(W.sum(1), 1, atol=1e-12)
assert list(s["point_component"][:]) == [0, 0, 0, 1, 1, 1]
# plane coordinates reproduce the triangle's edge lengths
px, py = np.asarray(s["plane_vertex_x"][:]), np.asarray(s["plane_vertex_y"][:])
idx = list(s["plane_vertex_index"][:])
assert idx == [0, 1, 2]
p = V[idx].astype(np.float64)
for i, j in ((0, 1), (1, 2), (0, 2)):
    dp = math.hypot(px[i] - px[j], py[i] - py[j]); dv = np.linalg.norm(p[i] - p[j])
    assert abs(dp - dv) <= 1e-6 * dv, (i, j, dp, dv)
g = np.asarray(s["plane_test_err"][:])
assert g.shape == (3, 3) and np.isfinite(g).all() and ((g >= 0) & (g <= 1)).all()
# metrics in range; the ensemble of all points is at least as good in NLL as the worst point
for v in ("accuracy", "ece", "ece_count", "brier"):
    x = float(s[v][...]); assert 0 <= x <= 1 + 1e-12, (v, x)
pl = np.asarray(s["point_test_loss"][:])
assert float(s["nll"][...]) <= pl.max() + 1e-9, (float(s["nll"][...]), pl)
assert (np.asarray(s["component_nll"][:]) > 0).all()
lam = np.asarray(s["lambda"][:]); vi = np.asarray(s["volume_init"][:])
assert np.allclose(lam, np.maximum(1e-6 / np.log(vi + 1e-4), 1e-8), rtol=1e-12), (lam, vi)
print("volumes", np.asarray(s["volume"][:]), "point err", np.asarray(s["point_test_err"][:]), "ens nll", float(s["nll"][...]))
PY
# The base vertex's test metrics equal `evaluate` of model.nc (the mlp has no BN to refresh).
"$VALLEY" evaluate "$dir/e1/model.nc" "${C[@]}" --out "$dir/ev" > /dev/null 2>&1 || fail "evaluate"
"$PYTHON" - "$dir/g1/simplex.nc" "$dir/ev/eval.nc" <<'PY' || fail "base vertex metrics"
import sys
from netCDF4 import Dataset
s, e = Dataset(sys.argv[1]), Dataset(sys.argv[2])
assert abs(float(s["vertex_test_loss"][0]) - float(e["nll"][...])) < 1e-6, (float(s["vertex_test_loss"][0]), float(e["nll"][...]))
assert abs(float(s["vertex_test_err"][0]) - (1 - float(e["accuracy"][...]))) < 1e-12
PY
# A complex connecting the two models: both stay fixed, 2 shared connectors.
"$VALLEY" simplex "$dir/e1/model.nc" "$dir/e2/model.nc" "${C[@]}" --set simplex.epochs=1 --set simplex.samples=2 \
    --set simplex.eval_samples=4 --out "$dir/cx" > "$dir/cx.log" 2>&1 || { tail -20 "$dir/cx.log"; fail "complex"; }
"$PYTHON" - "$dir/cx/simplex.nc" "$dir/e1/model.nc" "$dir/e2/model.nc" <<'PY' || fail "complex content"
import sys, numpy as np
from netCDF4 import Dataset
s, m1, m2 = (Dataset(p) for p in sys.argv[1:])
names = m1.getncattr("valley.params").split(",")
flat = lambda d: np.concatenate([d[n][:].ravel() for n in names]).astype(np.float32)
V = np.asarray(s["vertices"][:], dtype=np.float32)
assert s.getncattr("simplex_kind") == "complex" and V.shape[0] == 4
assert (V[0] == flat(m1)).all() and (V[1] == flat(m2)).all(), "a mode moved"
assert list(s["vertex_fixed"][:]) == [1, 1, 0, 0]
assert np.asarray(s["simplex_vertices"][:]).tolist() == [[0, 2, 3], [1, 2, 3]]
assert set(np.asarray(s["point_simplex"][:]).tolist()) <= {0, 1}
assert (np.asarray(s["volume"][:]) > 0).all()
PY
# A NaN in the loss of step 3: exit 3, a clear message, no simplex.nc.
status=0
"$VALLEY" simplex "$dir/e1/model.nc" "${C[@]}" --set simplex.epochs=1 --set debug.nan_step=3 --out "$dir/nan" \
    > "$dir/nan.log" 2>&1 || status=$?
[[ $status -eq 3 ]] || { tail "$dir/nan.log"; fail "NaN loss: exit status $status, want 3"; }
grep -q "non-finite loss" "$dir/nan.log" || fail "no message for the NaN loss"
[[ ! -e $dir/nan/simplex.nc ]] || fail "simplex.nc written after a numerical failure"
ls "$dir/nan" 2>/dev/null | grep -q tmp && fail "temporary file left behind"
# The NaN in one group only (rank 1 of 2 groups): every rank stops with exit 3 (no hang in the
# vertex broadcast), the failing group's message is printed, no simplex.nc.
status=0
$MPIRUN -np 2 "$VALLEY" simplex "$dir/e1/model.nc" "${C[@]}" --set simplex.epochs=1 --set simplex.components=2 \
    --set parallel.group_size=1 --set debug.nan_step=2 --set debug.nan_rank=1 --out "$dir/nan2" > "$dir/nan2.log" 2>&1 || status=$?
[[ $status -eq 3 ]] || { tail "$dir/nan2.log"; fail "NaN in group 1: exit status $status, want 3"; }
grep -q "group 1: simplex: non-finite loss" "$dir/nan2.log" || { tail "$dir/nan2.log"; fail "no message from the failing group"; }
[[ ! -e $dir/nan2/simplex.nc ]] || fail "simplex.nc written after a numerical failure in one group"
# A signal during training (debug.stop_at_step acts as one): exit 143, the message says that
# simplex training keeps no checkpoint, no simplex.nc.
status=0
"$VALLEY" simplex "$dir/e1/model.nc" "${C[@]}" --set simplex.epochs=1 --set debug.stop_at_step=2 --out "$dir/sig" \
    > "$dir/sig.log" 2>&1 || status=$?
[[ $status -eq 143 ]] || { tail "$dir/sig.log"; fail "signal: exit status $status, want 143"; }
grep -q "simplex: stopped by a signal at component 0 vertex .* epoch 1, batch 2; simplex training keeps no checkpoint" \
    "$dir/sig.log" || { tail "$dir/sig.log"; fail "no message for the signal"; }
[[ ! -e $dir/sig/simplex.nc ]] || fail "simplex.nc written after a signal"
echo "simplex_groups: ok"
