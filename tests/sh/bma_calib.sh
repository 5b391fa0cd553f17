#!/usr/bin/env bash
# bma's issue-18 methods on a split-classes run: an mlp with dropout 0.3 trained on classes
# 0-4 of the first 3000 training images with the last 500 of them held out for validation,
# SWA/SWAG collected; `valley bma` with sgd, swa, swag, sgd-temp, swa-temp, sgd-drop, swa-drop.
#   - against NumPy/SciPy (tests/py/bma_split_ref.py): the validation images (the last 500 of
#     the class selection), the fitted temperatures (scipy's Brent), the validation NLLs, the test
#     metrics of sgd, swa, sgd-temp, swa-temp and the held-out classes' mean entropy and
#     histogram, all recomputed from the dataset file and the weights alone (1e-5 relative);
#   - rank counts: 2 and 4 ranks give the 1-rank bma.nc to 1e-6 relative (the forwards' batches
#     and the sums change with the shards: float rounding only, while other dropout masks would
#     move sgd-drop by ~1e-2); 2 groups of 1 rank give it bit for bit; a second 1-rank run too;
#   - the MC-dropout masks matter: run.seed 2 moves sgd-drop's NLL by more than 1e-4 relative and
#     leaves sgd's unchanged; sgd-drop differs from sgd;
#   - errors (exit 2, no bma.nc): sgd-drop of a network without dropout, sgd-temp without
#     data.validation, an unknown method.
set -u
source "$(dirname "$0")/lib.bash"
test_setup bma_calib
DATA=input/data/fashion-mnist.nc
C=(--set model.kind=mlp --set model.widths=64,32 --set model.dropout=0.3 --set data.train_subset=3000
   --set data.test_subset=600 --set data.validation=500 --set data.classes=0,1,2,3,4)
M=(--set bma.samples=8 --set bma.methods=sgd,swa,swag,sgd-temp,swa-temp,sgd-drop,swa-drop)
"$VALLEY" train "${C[@]}" --set train.epochs=4 --set train.swag=true --set train.swa_start=3 --set train.swa_freq=2 \
    --set train.swag_rank=3 --out "$dir/train" >"$dir/train.log" 2>&1 || { tail -5 "$dir/train.log"; fail "train"; }
bma() { # LABEL NP ARGS...
    local label=$1 np=$2
    shift 2
    $MPIRUN -np "$np" "$VALLEY" bma "$dir/train/swag.nc" "$dir/train/model.nc" "${C[@]}" "${M[@]}" "$@" \
        --out "$dir/$label" >"$dir/$label.log" 2>&1 || { tail -5 "$dir/$label.log"; err "bma $label"; }
}
bma np1 1
bma np1b 1
bma np2 2
bma np4 4
bma groups 2 --set parallel.group_size=1
bma seed2 1 --set run.seed=2
grep -A8 "^.*method  *models" "$dir/np1.log" | sed 's/^\[[^]]*\] //'
"$PYTHON" tests/py/bma_split_ref.py "$DATA" "$dir/train/model.nc" "$dir/train/swag.nc" "$dir/np1/bma.nc" 3000 600 500 \
    0,1,2,3,4 >"$dir/ref.txt" 2>&1 || { cat "$dir/ref.txt"; err "bma.nc against NumPy/SciPy"; }
tail -3 "$dir/ref.txt"
for o in np1b groups; do
    "$PYTHON" tests/py/nc_compare.py "$dir/np1/bma.nc" "$dir/$o/bma.nc" >"$dir/cmp_$o.txt" 2>&1 ||
        { cat "$dir/cmp_$o.txt"; err "$o: bma.nc differs from the 1-rank run"; }
done
"$PYTHON" - "$dir" <<'PY' || err "rank counts / masks"
import sys
import numpy as np
from netCDF4 import Dataset
d = sys.argv[1]
ref = Dataset(d + "/np1/bma.nc")
names = list(ref["method_name"][:])
assert names == ["sgd", "swa", "swag", "sgd-temp", "swa-temp", "sgd-drop", "swa-drop"], names
assert list(ref["n_samples"][:]) == [1, 1, 8, 1, 1, 8, 8], ref["n_samples"][:]
bad = []
for o in ("np2", "np4"):
    b = Dataset(d + "/%s/bma.nc" % o)
    worst = 0.0
    for v in ref.variables:
        x, y = ref[v][:], b[v][:]
        if v == "method_name":
            bad += [] if list(x) == list(y) else [(o, v)]
        elif np.asarray(x).dtype.kind in "iu" and v != "n_samples":  # histograms: an image at a bin edge may move
            diff = int(np.abs(np.asarray(x, np.int64) - np.asarray(y, np.int64)).sum())
            if diff > 4 or (np.asarray(x).sum(axis=-1) != np.asarray(y).sum(axis=-1)).any():
                bad.append((o, v, diff))
        else:
            x, y = np.asarray(x, float), np.asarray(y, float)
            if v in ("bin_accuracy", "bin_confidence"):  # compared where the bins hold the same images
                same = (np.asarray(ref["bin_count"][:]) == np.asarray(b["bin_count"][:])).all(axis=1)
                x, y = x[same], y[same]
            if not np.array_equal(np.isnan(x), np.isnan(y)):
                bad.append((o, v, "NaN positions"))
                continue
            m = ~np.isnan(x)
            err = np.abs(x[m] - y[m])
            rel = err / np.maximum(np.abs(x[m]), 1e-6)
            # accuracy and the ECEs jump by ~1/n when a near-tie or an image at a bin edge rounds
            # the other way; everything else is continuous in the logits
            jump = 2.0 / int(ref.n_test) if v in ("accuracy", "ece", "ece_count") else 0.0
            if ((rel > 1e-6) & (err > jump)).any():
                bad.append((o, v, rel.max()))
            worst = max(worst, rel.max() if rel.size else 0)
    print("%s vs 1 rank: largest relative difference %.2g" % (o, worst))
s2 = Dataset(d + "/seed2/bma.nc")
i, j = names.index("sgd-drop"), names.index("sgd")
n1, n2 = float(ref["nll"][i]), float(s2["nll"][i])
print("sgd-drop nll: seed 1 %.6f, seed 2 %.6f; sgd %.6f" % (n1, n2, float(ref["nll"][j])))
if abs(n1 - n2) <= 1e-4 * n1:
    bad.append("run.seed 2 leaves sgd-drop unchanged: the masks do not matter?")
if float(ref["nll"][j]) != float(s2["nll"][j]):
    bad.append("run.seed changes sgd")
if abs(n1 - float(ref["nll"][j])) <= 1e-4 * n1:
    bad.append("sgd-drop equals sgd: no dropout at test")
assert not bad, bad
PY
# errors
expect_bad() { # LABEL PATTERN -- ARGS...
    local label=$1 pat=$2 st=0
    shift 3
    "$VALLEY" bma "$@" --out "$dir/$label" >"$dir/$label.log" 2>&1 || st=$?
    echo "$label: status $st: $(grep -m1 '^valley' "$dir/$label.log")"
    [[ $st -eq 2 ]] || err "$label: exit status $st, want 2"
    grep -qF -- "$pat" "$dir/$label.log" || err "$label: message lacks '$pat'"
    [[ ! -e $dir/$label/bma.nc ]] || err "$label: bma.nc written"
}
"$VALLEY" train --set model.kind=mlp --set model.widths=16 --set data.train_subset=500 --set data.test_subset=100 \
    --set train.epochs=1 --out "$dir/nodrop" >"$dir/nodrop.log" 2>&1 || err "train without dropout"
expect_bad nodrop_bma "sgd-drop averages MC-dropout passes, but the network of $dir/nodrop/model.nc has no dropout layers" -- \
    "$dir/nodrop/model.nc" --set data.test_subset=100 --set bma.methods=sgd,sgd-drop
expect_bad noval_bma "bma.methods: sgd-temp fits the temperature on the validation split, but data.validation = 0" -- \
    "$dir/nodrop/model.nc" --set data.test_subset=100 --set bma.methods=sgd-temp
expect_bad unknown_bma "bma.methods: unknown method 'sgd-tmp' (sgd, ensemble, swa, swag-diag, swag, sgd-temp, swa-temp, sgd-drop, swa-drop, laplace-sgd, laplace-swa)" -- \
    "$dir/nodrop/model.nc" --set bma.methods=sgd,sgd-tmp
[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "$name: ok"
