#!/usr/bin/env bash
# `valley run`'s shortcuts stage (the loss-landscape paper's skip-connection figure at demo
# scale) on a tiny deck, 2 ranks: the two trainings are a resnet with and without its
# shortcuts (model.nc says so), each plane is a filter-normalised random plane of the
# requested grid, report.md's table equals the numbers a numpy computation draws from the two
# surface.nc (centre, range, curvature, fractions, test error), both figures exist, the
# deck's own model keys are back after the stage (report's effective deck, a later stage),
# and a second run reuses all four outputs.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup run_shortcuts
cat > "$dir/sc.ini" <<'INI'
[run]
stages = shortcuts
[data]
train_subset = 1000
test_subset = 300
[model]
kind = mlp
widths = 16
[shortcuts]
depth = 8
width_factor = 0.25
epochs = 1
train_subset = 400
grid = 5
span = 0.5
eval_subset = 200
INI
$MPIRUN -np 2 "$VALLEY" run "$dir/sc.ini" --out "$dir/out" > "$dir/run1.log" 2>&1 || { tail -20 "$dir/run1.log"; fail "valley run"; }
for f in short/model.nc noshort/model.nc short/plane/surface.nc noshort/plane/surface.nc; do
    [[ -f $dir/out/shortcuts/$f ]] || fail "no shortcuts/$f"
done
for f in shortcuts_short/surface_train_loss.png shortcuts_noshort/surface_train_loss.png; do
    [[ -s $dir/out/figures/$f ]] || fail "no figure $f"
    grep -qF "figures/$f" "$dir/out/report.md" || fail "report.md does not show $f"
done
"$PYTHON" - "$dir/out" <<'PY' || fail "the report's shortcuts table differs from the files"
import re, sys
import numpy as np
from netCDF4 import Dataset
out = sys.argv[1]
rows = {}
for line in open(f"{out}/report.md"):
    m = re.match(r"\| (with|without) shortcuts \| (.*) \|$", line.strip())
    if m and len(m.group(2).split(" | ")) == 6:
        rows[m.group(1)] = m.group(2).split(" | ")
assert set(rows) == {"with", "without"}, rows
for name, key in (("short", "with"), ("noshort", "without")):
    m = Dataset(f"{out}/shortcuts/{name}/model.nc")
    assert m.model_kind == "resnet" and int(m.model_depth) == 8, (m.model_kind, m.model_depth)
    want_sc = 1 if key == "with" else 0
    assert int(str(m.model_shortcuts).lower() in ("1", "true")) == want_sc, (name, m.model_shortcuts)
    s = Dataset(f"{out}/shortcuts/{name}/plane/surface.nc")
    x, y = np.asarray(s["x"][:], float), np.asarray(s["y"][:], float)
    assert len(x) == 5 and len(y) == 5 and abs(x[0] + 0.5) < 1e-12 and abs(x[-1] - 0.5) < 1e-12, x
    assert np.asarray(s["computed"][:]).all()
    L = np.asarray(s["train_loss"][:], float)            # (y, x)
    E = np.asarray(s["test_err"][:], float)
    i, j = int(np.argmin(np.abs(y))), int(np.argmin(np.abs(x)))
    c = L[i, j]
    hx, hy = x[1] - x[0], y[1] - y[0]
    curv = ((L[i, j + 1] - 2 * c + L[i, j - 1]) / hx**2 + (L[i + 1, j] - 2 * c + L[i - 1, j]) / hy**2) / 2
    want = [f"{c:.3f}", f"{L.min():.3f} - {L.max():.3f}", f"{curv:.2f}", f"{100 * (L < 1).mean():.0f}%",
            f"{100 * (L < c + 0.5).mean():.0f}%", f"{E[i, j]:.3f}"]
    assert rows[key] == want, (key, rows[key], want)
    print(f"{key} shortcuts: {' | '.join(want)}")
PY
grep -A3 "^\[model\]" "$dir/out/report.md" | grep -q "^kind = mlp" || fail "the deck's model.kind is not restored after the stage"
$MPIRUN -np 2 "$VALLEY" run "$dir/sc.ini" --out "$dir/out" > "$dir/run2.log" 2>&1 || { tail -20 "$dir/run2.log"; fail "second valley run"; }
[[ $(grep -c "stage shortcuts: reusing" "$dir/run2.log") -eq 4 ]] || { grep "stage" "$dir/run2.log"; fail "the second run does not reuse the stage's four outputs"; }
echo "run_shortcuts: ok"
