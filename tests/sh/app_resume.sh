#!/usr/bin/env bash
# End-to-end: resuming from an epoch checkpoint continues bit for bit (INTERFACE:
# "the continued run equals an uninterrupted one bit for bit"), on 2 ranks.
#   straight: 2 epochs in one go
#   ck:       the same with train.checkpoint_every=1 (writes checkpoints/epoch_0001.nc);
#             writing checkpoints must not change the result either
#   resumed:  a run directory holding only ck's epoch_0001.nc and history.nc, whose
#             second history row is overwritten with NaN (the resumed run must take
#             epoch 1's row, wall-clock time included, from history.nc and recompute
#             epoch 2), then
#             --set train.resume=.../epoch_0001.nc for the second epoch
# model.nc variables must be bit-identical to straight's, history.nc too except the
# wall-clock column `time`. (Resuming from a mid-epoch pre-emption checkpoint: app_signal.)
set -u
source "$(dirname "$0")/lib.bash"
test_setup app_resume
NP=2
deck=(--set model.kind=convnet --set run.seed=5 --set data.train_subset=1280 --set data.test_subset=200
      --set train.epochs=2)
train() { # LABEL [--set ...]
    local label=$1 t0=$SECONDS
    shift
    if ! timeout 120 $MPIRUN -np $NP "$VALLEY" train "${deck[@]}" "$@" --out "$dir/$label" >"$dir/$label.log" 2>&1; then
        tail -20 "$dir/$label.log"; fail "training '$label' failed"
    fi
    [[ -f $dir/$label/model.nc ]] || fail "$label: no model.nc"
    echo "trained $label on $NP ranks in $((SECONDS - t0)) s"
}
compare() { # A B [nc_compare options]
    local a=$1 b=$2; shift 2
    "$PYTHON" tests/py/nc_compare.py "$a" "$b" "$@" || err "$a and $b differ"
}

train straight
train ck --set train.checkpoint_every=1
[[ -f $dir/ck/checkpoints/epoch_0001.nc ]] || fail "checkpoint_every=1 wrote no checkpoints/epoch_0001.nc"
[[ ! -e $dir/ck/checkpoints/epoch_0002.nc ]] || err "epoch_0002.nc written although epoch 2 is the last (model.nc holds it)"
compare "$dir/straight/model.nc" "$dir/ck/model.nc"

mkdir -p "$dir/resumed/checkpoints"
cp "$dir/ck/checkpoints/epoch_0001.nc" "$dir/resumed/checkpoints/"
cp "$dir/ck/history.nc" "$dir/resumed/history.nc"
"$PYTHON" - "$dir/resumed/history.nc" <<'EOF' || fail "could not edit history.nc"
import sys, numpy as np, netCDF4
with netCDF4.Dataset(sys.argv[1], "a") as f:
    assert len(f.dimensions["epoch"]) == 2, "history.nc of a 2-epoch run should have 2 rows"
    for v in f.variables.values():
        if v.dtype.kind == "f":
            v[1] = np.nan
EOF
train resumed --set train.checkpoint_every=1 --set train.resume="$dir/resumed/checkpoints/epoch_0001.nc"
grep -q "resuming from .*epoch_0001.nc at epoch 2" "$dir/resumed.log" || {
    cat "$dir/resumed.log"; err "the resumed run did not log 'resuming from ... at epoch 2'"; }
# epoch 1's history row (and its wall-clock time) must come from the first run, not a rerun
"$PYTHON" - "$dir/ck/history.nc" "$dir/resumed/history.nc" <<'EOF' || err "the resumed run recomputed epoch 1"
import sys, netCDF4
with netCDF4.Dataset(sys.argv[1]) as a, netCDF4.Dataset(sys.argv[2]) as b:
    ta, tb = float(a["time"][0]), float(b["time"][0])
    assert ta == tb, f"time of epoch 1: {ta!r} in the first run, {tb!r} after resuming"
EOF
compare "$dir/straight/model.nc" "$dir/resumed/model.nc"
compare "$dir/straight/history.nc" "$dir/resumed/history.nc" --exclude time

leftovers=$(find "$dir" -name '*.tmp.*')
[[ -z $leftovers ]] || err "temporary files left: $leftovers"
[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "$name: ok"
