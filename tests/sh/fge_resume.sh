#!/usr/bin/env bash
# FGE stopped mid-cycle (debug.stop_at_step acts like SIGUSR1: checkpoint, exit 143) and
# resumed with train.resume=auto ends bit-identical to an uninterrupted run: fge.nc, the
# snapshots, on 2 ranks; the snapshots taken before the stop are re-read, not retrained.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup fge_resume
C=(--set data.train_subset=1024 --set data.test_subset=300 --set model.kind=mlp --set model.widths=32)
"$VALLEY" train "${C[@]}" --set train.epochs=2 --out "$dir/t" > "$dir/t.log" 2>&1 || fail "train"
F=(fge "$dir/t/model.nc" "${C[@]}" --set fge.cycle=2 --set fge.cycles=3)
$MPIRUN -np 2 "$VALLEY" "${F[@]}" --out "$dir/a" > "$dir/a.log" 2>&1 || { tail "$dir/a.log"; fail "uninterrupted fge"; }
status=0
$MPIRUN -np 2 "$VALLEY" "${F[@]}" --set debug.stop_at_step=28 --out "$dir/b" > "$dir/b1.log" 2>&1 || status=$?
[[ $status -eq 143 ]] || { tail "$dir/b1.log"; fail "stopped fge: status $status, want 143"; }
[[ -f $dir/b/checkpoints/preempt.nc && ! -f $dir/b/fge.nc ]] || fail "after the stop: want checkpoints/preempt.nc and no fge.nc"
$MPIRUN -np 2 "$VALLEY" "${F[@]}" --set train.resume=auto --out "$dir/b" > "$dir/b2.log" 2>&1 || { tail "$dir/b2.log"; fail "resumed fge"; }
grep -q "with 2 snapshot(s) re-read" "$dir/b2.log" || fail "the resumed chain did not re-read its 2 snapshots"
"$PYTHON" tests/py/nc_compare.py "$dir/a/fge.nc" "$dir/b/fge.nc" || fail "fge.nc differs"
"$PYTHON" tests/py/nc_compare.py "$dir/a/history.nc" "$dir/b/history.nc" --exclude time > /dev/null || fail "history.nc differs"
for k in 01 02 03; do
    "$PYTHON" tests/py/nc_compare.py "$dir/a/snapshots/snapshot_$k.nc" "$dir/b/snapshots/snapshot_$k.nc" > /dev/null || fail "snapshot $k differs"
done
echo "fge_resume: ok"
