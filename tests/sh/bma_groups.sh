#!/usr/bin/env bash
# Issue 4: SWAG collection in train, then `valley bma` over 1 group (1 rank) and over
# 2 groups (2 ranks, group_size 1): per-sample probabilities are combined in sample
# order, so bma.nc must be bit-identical. Also FGE: snapshots at mid-cycle
# (cycle 2 → epochs 1 and 3), one member per snapshot, ensemble metrics in range.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup bma_groups
common=(--set data.train_subset=1024 --set data.test_subset=500 --set model.kind=mlp --set model.widths=32)
"$VALLEY" train "${common[@]}" --set train.epochs=3 --set train.swag=true --set train.swa_start=2 \
    --set train.swa_freq=4 --set train.swag_rank=5 --out "$dir/train" > "$dir/train.log" 2>&1 || { tail "$dir/train.log"; fail "train"; }
[[ -f $dir/train/swag.nc ]] || fail "no swag.nc"
"$PYTHON" - "$dir/train/swag.nc" <<'PY' || fail "swag.nc content"
import sys, numpy as np
from netCDF4 import Dataset
d = Dataset(sys.argv[1])
n = int(d["n_models"][...]); dev = d["deviations"][:]
assert n == 8, f"n_models {n}, want 8 (2 epochs x 4 per epoch)"
assert dev.shape[0] == 5, f"{dev.shape[0]} deviations kept, want K = 5"
assert (d["variance"][:] > 0).all(), "non-positive variance"
print("swag.nc: n_models", n, "deviations", dev.shape)
PY
bma=(bma "$dir/train/swag.nc" "$dir/train/model.nc" "${common[@]}" --set bma.samples=4)
$MPIRUN -np 1 "$VALLEY" "${bma[@]}" --out "$dir/g1" > "$dir/g1.log" 2>&1 || { tail "$dir/g1.log"; fail "bma 1 group"; }
$MPIRUN -np 2 "$VALLEY" "${bma[@]}" --set parallel.group_size=1 --out "$dir/g2" > "$dir/g2.log" 2>&1 || { tail "$dir/g2.log"; fail "bma 2 groups"; }
"$PYTHON" tests/py/nc_compare.py "$dir/g1/bma.nc" "$dir/g2/bma.nc" || fail "bma.nc differs between 1 and 2 groups"
"$PYTHON" - "$dir/g1/bma.nc" <<'PY' || fail "bma.nc content"
import sys
from netCDF4 import Dataset
d = Dataset(sys.argv[1])
names = list(d["method_name"][:])
assert names == ["sgd", "swa", "swag-diag", "swag"], names
for v in ("accuracy", "ece", "ece_count"):
    x = d[v][:]; assert ((x >= 0) & (x <= 1)).all(), (v, x)
assert (d["nll"][:] > 0).all() and list(d["n_samples"][:]) == [1, 1, 4, 4]
print(dict(zip(names, d["accuracy"][:].round(4))))
PY
"$VALLEY" fge "$dir/train/model.nc" "${common[@]}" --set fge.cycle=2 --set fge.cycles=2 --out "$dir/fge" > "$dir/fge.log" 2>&1 || { tail "$dir/fge.log"; fail "fge"; }
grep -q "FGE snapshot 1 (epoch 1)" "$dir/fge.log" && grep -q "FGE snapshot 2 (epoch 3)" "$dir/fge.log" || fail "snapshot epochs"
[[ -f $dir/fge/snapshots/snapshot_01.nc && -f $dir/fge/snapshots/snapshot_02.nc ]] || fail "snapshot files"
"$PYTHON" - "$dir/fge/fge.nc" <<'PY' || fail "fge.nc content"
import sys
from netCDF4 import Dataset
d = Dataset(sys.argv[1])
assert d.dimensions["member"].size == 2
a = float(d["accuracy"][...]); m = d["member_accuracy"][:]
assert 0 < a <= 1 and all(0 < x <= 1 for x in m), (a, m)
print("fge ensemble accuracy", a, "members", list(m))
PY
# MultiSWAG: two chains trained at once in two groups (seeds 1 and 2), one BMA over both.
$MPIRUN -np 2 "$VALLEY" train "${common[@]}" --set train.epochs=2 --set train.swag=true --set train.swa_start=1 \
    --set train.swa_freq=2 --set train.swag_rank=3 --set parallel.group_size=1 --out "$dir/multi" > "$dir/multi.log" 2>&1 \
    || { tail "$dir/multi.log"; fail "multi-chain train"; }
[[ -f $dir/multi/group_0/swag.nc && -f $dir/multi/group_1/swag.nc ]] || fail "no swag.nc per group"
"$PYTHON" tests/py/nc_compare.py "$dir/multi/group_0/swag.nc" "$dir/multi/group_1/swag.nc" --only mean >/dev/null 2>&1 \
    && fail "the two chains have identical SWA means (seeds not per group?)"
"$VALLEY" bma "$dir/multi/group_0/swag.nc" "$dir/multi/group_1/swag.nc" "${common[@]}" --set train.swag_rank=3 \
    --set bma.samples=4 --set bma.methods=swa,swag --out "$dir/multibma" > "$dir/multibma.log" 2>&1 || { tail "$dir/multibma.log"; fail "multiswag bma"; }
grep -q "MultiSWAG: 2 chains" "$dir/multibma.log" || fail "MultiSWAG not used"
"$PYTHON" - "$dir/multibma/bma.nc" <<'PY' || fail "multiswag bma.nc"
import sys
from netCDF4 import Dataset
d = Dataset(sys.argv[1])
assert list(d["method_name"][:]) == ["swa", "swag"] and list(d["n_samples"][:]) == [2, 4], (d["method_name"][:], d["n_samples"][:])
print("MultiSWAG accuracy", list(d["accuracy"][:]))
PY
echo "bma_groups: ok"
