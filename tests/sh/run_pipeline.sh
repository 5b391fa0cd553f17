#!/usr/bin/env bash
# `valley run` (what `make demo` does) on a tiny deck with every stage: endpoints in two
# groups, evaluate, bma, fge, curve, surface, pca, infer, simplex, baselines, hessian and export; report.md must have each section and
# every figure it names must exist; a second run reuses the finished stages, a third one
# without one endpoint's swag.nc trains the endpoints again; python/valley reads the results.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup run_pipeline
cat > "$dir/mini.ini" <<'INI'
[run]
stages = endpoints,evaluate,bma,fge,curve,surface,pca,infer,simplex,baselines,hessian,export
[data]
train_subset = 1500
test_subset = 400
[model]
kind = mlp
widths = 32
[train]
epochs = 3
swag = true
swa_start = 2
swa_freq = 2
swag_rank = 4
[bma]
samples = 3
[fge]
cycle = 2
cycles = 1
[curve]
epochs = 2
points = 5
lr = 0.05
[surface]
nx = 5
ny = 4
[pca]
rank = 3
[infer]
rank = 3
samples = 3
burnin = 1
train_subset = 500
[simplex]
vertices = 3
epochs = 1
samples = 2
eval_samples = 3
grid = 3
train_subset = 500
[baselines]
validation = 200
samples = 2
[laplace]
fit_samples = 1
[hessian]
samples = 200
steps = 6
probes = 2
top = 3
grid = 3
INI
$MPIRUN -np 2 "$VALLEY" run "$dir/mini.ini" --out "$dir/out" > "$dir/run1.log" 2>&1 || { tail -20 "$dir/run1.log"; fail "valley run"; }
r=$dir/out/report.md
[[ -f $r ]] || fail "no report.md"
for section in "## Training" "## Evaluation" "## Posterior approximations" "## Mode connectivity" "## Loss surface" "## PCA of the SWAG deviations" "## Subspace inference" "## Simplex" "## The SWAG paper's baselines" "## Curvature" "## Effective deck"; do
    grep -q "^$section" "$r" || fail "report.md has no '$section' section"
done
for fig in $(grep -o '(figures/[^)]*\.png)' "$r" | tr -d '()'); do
    [[ -s $dir/out/$fig ]] || fail "report.md names $fig, which does not exist"
done
[[ $(grep -c '(figures/' "$r") -ge 6 ]] || fail "fewer than 6 figures in report.md"
grep -q "| swag | 3 |" "$r" || fail "no swag row with 3 samples"
$MPIRUN -np 2 "$VALLEY" run "$dir/mini.ini" --out "$dir/out" > "$dir/run2.log" 2>&1 || fail "second valley run"
for s in endpoints bma fge curve pca infer simplex hessian; do grep -q "stage $s: reusing" "$dir/run2.log" || fail "stage $s was not reused"; done
grep -q "hessian_compare.png" "$r" && grep -q "hessian_plane/surface_hessian_ratio.png" "$r" || fail "no Hessian figures in report.md"
[[ $(grep -c -e "^| SGD (first run)" -e "^| SWA (first run)" -e "^| curve midpoint" "$r") -eq 3 ]] || fail "the curvature table lacks a model"
grep -q "0 point(s) to compute" "$dir/run2.log" || fail "the surface was recomputed"
# a run killed between model.nc and swag.nc (seen while extending the kill campaign): the
# endpoints stage is not finished, a rerun trains again and writes the same swag.nc
mv "$dir/out/endpoints/group_1/swag.nc" "$dir/swag1.nc"
$MPIRUN -np 2 "$VALLEY" run "$dir/mini.ini" --out "$dir/out" > "$dir/run3.log" 2>&1 || fail "third valley run"
! grep -q "stage endpoints: reusing" "$dir/run3.log" || fail "endpoints reused without group_1/swag.nc"
"$PYTHON" tests/py/nc_compare.py "$dir/swag1.nc" "$dir/out/endpoints/group_1/swag.nc" >/dev/null ||
    fail "the retrained group_1/swag.nc differs (or is missing)"
# python/valley reads the results into labelled arrays (issue 16), values as netCDF4 reads them
"$PYTHON" - "$dir/out" <<'PY' || fail "python/valley on the pipeline's files"
import sys
import numpy as np
from netCDF4 import Dataset
sys.path.insert(0, "python")
import valley
out = sys.argv[1]
b = valley.open(f"{out}/bma/bma.nc")
with Dataset(f"{out}/bma/bma.nc") as f:  # (a netCDF4 Dataset kept open while its variables are read)
    names = [str(v) for v in f["method_name"][:]]
    nll = np.asarray(f["nll"][:])
assert list(b.method.values) == names, (list(b.method.values), names)
for i, m in enumerate(names):
    assert float(b.nll.sel({"method": m})) == nll[i]
inf = valley.open(f"{out}/infer/infer.nc")
assert "pca-ess" in list(inf.method.values) and inf.z.dims == ("sample", "k")
c = valley.open(f"{out}/curve/curve_eval.nc")
with Dataset(f"{out}/curve/curve_eval.nc") as f:
    t, err = np.asarray(f["t"][:]), np.asarray(f["test_err"][:])
assert float(c.test_err.sel(t=t[2])) == err[2]
s = valley.open(f"{out}/plane/surface.nc")
assert s.train_loss.dims == ("y", "x") and s.train_loss.shape == (4, 5)
h = valley.open(f"{out}/endpoints/group_0/history.nc")
assert list(h.epoch.values) == [1, 2, 3]
assert valley.kind(f"{out}/endpoints/group_0/swag.nc") == "swag"
net = valley.load_model(f"{out}/endpoints/group_0/model.nc")
import onnx
onnx.checker.check_model(onnx.load(f"{out}/export/model.onnx"), full_check=True)
assert "## ONNX (`export/model.onnx`)" in open(f"{out}/report.md").read()
print("python/valley: bma, infer, curve_eval, surface, history labelled; the mlp loads into torch; export/model.onnx checked")
PY
echo "run_pipeline: ok"
