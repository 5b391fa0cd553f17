#!/usr/bin/env bash
# The validation split and the class selection (issue 18: data.validation, data.classes).
#   - training never sees the validation images: a run with data.train_subset = S and
#     data.validation = V trains on exactly the first S - V images, so its model.nc and swag.nc
#     (SWA mean, BN statistics refreshed on the training images) equal bit for bit those of a run
#     with data.train_subset = S - V and no validation split; a run on all S images differs (the
#     comparison can tell them apart); its log reports S - V training samples;
#   - data.classes = 0,1,2,3,4 with a validation split: the training, validation, test and
#     held-out counts the log reports equal those counted with NumPy from the dataset file (the
#     first S training rows with those labels, minus the last V; the first T test rows by label);
#   - bad values exit 2 with a message naming the key and leave no file under --out:
#     data.validation >= the training selection (1 and 2 ranks; printed once), -1; data.classes
#     11 (not a class of the dataset), -1, a, 3,1,3 (duplicate), an empty value, 1,,2; classes on
#     a regression dataset (toy1d); classes with no training image among the first rows.
set -u
source "$(dirname "$0")/lib.bash"
test_setup data_split
DATA=input/data/fashion-mnist.nc
net=(--set model.kind=convnet --set model.width_factor=0.25 --set train.epochs=2 --set train.swa=true
     --set train.swa_start=2 --set train.swa_freq=2 --set data.test_subset=200)
run() { # LABEL ARGS...: valley train into $dir/LABEL
    local label=$1
    shift
    "$VALLEY" train "${net[@]}" "$@" --out "$dir/$label" >"$dir/$label.log" 2>&1 || { tail -5 "$dir/$label.log"; err "$label"; }
}
run heldout --set data.train_subset=700 --set data.validation=100
run first600 --set data.train_subset=600
run all700 --set data.train_subset=700
grep -q "on fashion-mnist: 600 samples" "$dir/heldout.log" || err "the run with 100 held out does not report 600 samples"
for f in model.nc swag.nc; do
    "$PYTHON" tests/py/nc_compare.py "$dir/heldout/$f" "$dir/first600/$f" >"$dir/cmp_$f.txt" 2>&1 ||
        { cat "$dir/cmp_$f.txt"; err "$f: training with data.validation = 100 of 700 differs from training on the first 600"; }
    ! "$PYTHON" tests/py/nc_compare.py "$dir/heldout/$f" "$dir/all700/$f" >/dev/null 2>&1 ||
        err "$f: training on all 700 equals training on 600 (the comparison cannot tell)"
done
echo "data.validation = 100 of 700: model.nc and swag.nc equal the run on the first 600, differ from the run on 700"

# classes and validation: the counts against NumPy
"$VALLEY" train --set model.kind=mlp --set model.widths=16 --set train.epochs=1 --set data.train_subset=2000 \
    --set data.test_subset=700 --set data.validation=300 --set data.classes=4,0,2,1,3 --out "$dir/classes" \
    >"$dir/classes.log" 2>&1 || { tail -5 "$dir/classes.log"; err "train with classes"; }
"$PYTHON" - "$DATA" "$dir/classes.log" <<'PY' || err "class selection counts"
import re, sys
import numpy as np
from netCDF4 import Dataset
with Dataset(sys.argv[1]) as f:
    ytr = np.asarray(f["train_y"][:2000]); yte = np.asarray(f["test_y"][:700])
keep = np.isin(ytr, [0, 1, 2, 3, 4]); kt = np.isin(yte, [0, 1, 2, 3, 4])
want = (int(keep.sum()) - 300, int(kt.sum()), int((~kt).sum()))
log = open(sys.argv[2]).read()
m = re.search(r"data: (\d+) training images of classes 0,1,2,3,4, (\d+) validation images .*?, (\d+) test images", log)
o = re.search(r"data: (\d+) test images of the other classes", log)
s = re.search(r"on fashion-mnist: (\d+) samples", log)
assert m and o and s, "log lines missing"
got = (int(m.group(1)), int(m.group(3)), int(o.group(1)))
assert got == want and int(m.group(2)) == 300 and int(s.group(1)) == want[0], (got, want)
print("classes 0-4 of the first 2000 training / 700 test rows, 300 held out: train %d, test %d, other classes %d" % got)
PY

# bad values: exit 2, the key named, nothing written
expect_bad() { # LABEL NP PATTERN -- ARGS...
    local label=$1 np=$2 pat=$3 out=$dir/$1 log=$dir/$1.log st=0
    shift 4
    if [[ $np -eq 0 ]]; then timeout 120 "$VALLEY" "$@" --out "$out" >"$log" 2>&1 || st=$?
    else timeout 120 $MPIRUN -np "$np" "$VALLEY" "$@" --out "$out" >"$log" 2>&1 || st=$?; fi
    echo "$label: status $st: $(grep -m1 '^valley' "$log")"
    [[ $st -eq 2 ]] || { err "$label: exit status $st, want 2"; sed 's/^/    | /' "$log" | tail -5; }
    grep -qF -- "$pat" "$log" || err "$label: message lacks '$pat'"
    [[ $np -le 1 || $(grep -cF -- "$pat" "$log") -eq 1 ]] || err "$label: the message is printed more than once"
    [[ -z $(find "$out" -type f 2>/dev/null) ]] || err "$label: files written: $(find "$out" -type f)"
}
small=(train --set model.kind=mlp --set model.widths=8 --set train.epochs=1 --set data.test_subset=100)
expect_bad val_all 0 "data.validation: 500 images held out for validation, but the training selection" -- \
    "${small[@]}" --set data.train_subset=500 --set data.validation=500
expect_bad val_all_np2 2 "--set data.validation=900: data.validation: 900 images held out" -- \
    "${small[@]}" --set data.train_subset=500 --set data.validation=900
expect_bad val_neg 0 "data.validation: -1 is out of range" -- "${small[@]}" --set data.validation=-1
expect_bad cls_11 0 "--set data.classes=0,11: data.classes: 11 is not a class of" -- \
    "${small[@]}" --set data.train_subset=500 --set data.classes=0,11
expect_bad cls_neg 0 "data.classes: '-1,2': entry 1 '-1' is not a class id" -- "${small[@]}" --set data.classes=-1,2
expect_bad cls_a 0 "data.classes: '0,a': entry 2 'a' is not a class id" -- "${small[@]}" --set data.classes=0,a
expect_bad cls_dup 0 "data.classes: '3,1,3': class 3 is given twice" -- "${small[@]}" --set data.classes=3,1,3
expect_bad cls_empty 0 "data.classes: empty value" -- "${small[@]}" --set data.classes=
expect_bad cls_gap 0 "data.classes: '1,,2': entry 2 is empty" -- "${small[@]}" --set data.classes=1,,2
printf '[data]\nclasses = 0, 1, 1\n' >"$dir/dup.ini"
expect_bad cls_deck 0 "dup.ini:2: data.classes: '0, 1, 1': class 1 is given twice" -- "${small[@]}" "$dir/dup.ini"
# the first 5 training labels of Fashion-MNIST are 9 0 0 3 0: class 1 has no image there
expect_bad cls_none 0 "data.classes: no training image of classes 1 among the first 5 training rows" -- \
    "${small[@]}" --set data.train_subset=5 --set data.classes=1
"$VALLEY" prepare toy1d --set data.path="$dir/toy1d.nc" >"$dir/toy.log" 2>&1 || err "prepare toy1d"
expect_bad cls_regression 0 "data.classes: $dir/toy1d.nc is a regression dataset" -- \
    train --set data.dataset=toy1d --set data.path="$dir/toy1d.nc" --set model.kind=mlp --set data.classes=0,1
[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "$name: ok"
