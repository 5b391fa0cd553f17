#!/usr/bin/env bash
# `valley run` (what `make demo` does) on a tiny deck with every stage: endpoints in two
# groups, evaluate, bma, fge, curve, surface, pca, infer and simplex; report.md must have each section and
# every figure it names must exist; a second run reuses the finished stages, a third one
# without one endpoint's swag.nc trains the endpoints again.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup run_pipeline
cat > "$dir/mini.ini" <<'INI'
[run]
stages = endpoints,evaluate,bma,fge,curve,surface,pca,infer,simplex
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
INI
$MPIRUN -np 2 "$VALLEY" run "$dir/mini.ini" --out "$dir/out" > "$dir/run1.log" 2>&1 || { tail -20 "$dir/run1.log"; fail "valley run"; }
r=$dir/out/report.md
[[ -f $r ]] || fail "no report.md"
for section in "## Training" "## Evaluation" "## Posterior approximations" "## Mode connectivity" "## Loss surface" "## PCA of the SWAG deviations" "## Subspace inference" "## Simplex" "## Effective deck"; do
    grep -q "^$section" "$r" || fail "report.md has no '$section' section"
done
for fig in $(grep -o '(figures/[^)]*\.png)' "$r" | tr -d '()'); do
    [[ -s $dir/out/$fig ]] || fail "report.md names $fig, which does not exist"
done
[[ $(grep -c '(figures/' "$r") -ge 6 ]] || fail "fewer than 6 figures in report.md"
grep -q "| swag | 3 |" "$r" || fail "no swag row with 3 samples"
$MPIRUN -np 2 "$VALLEY" run "$dir/mini.ini" --out "$dir/out" > "$dir/run2.log" 2>&1 || fail "second valley run"
for s in endpoints bma fge curve pca infer simplex; do grep -q "stage $s: reusing" "$dir/run2.log" || fail "stage $s was not reused"; done
grep -q "0 point(s) to compute" "$dir/run2.log" || fail "the surface was recomputed"
# a run killed between model.nc and swag.nc (seen while extending the kill campaign): the
# endpoints stage is not finished, a rerun trains again and writes the same swag.nc
mv "$dir/out/endpoints/group_1/swag.nc" "$dir/swag1.nc"
$MPIRUN -np 2 "$VALLEY" run "$dir/mini.ini" --out "$dir/out" > "$dir/run3.log" 2>&1 || fail "third valley run"
! grep -q "stage endpoints: reusing" "$dir/run3.log" || fail "endpoints reused without group_1/swag.nc"
"$PYTHON" tests/py/nc_compare.py "$dir/swag1.nc" "$dir/out/endpoints/group_1/swag.nc" >/dev/null ||
    fail "the retrained group_1/swag.nc differs (or is missing)"
echo "run_pipeline: ok"
