#!/usr/bin/env bash
# End-to-end: pre-emption. A training stopped by SIGUSR1/SIGTERM writes
# checkpoints/preempt.nc and exits 143 (INTERFACE "Exit status"); resuming from it
# (--set train.resume=...preempt.nc, same run directory, same rank count) gives a
# model.nc bit-identical to an uninterrupted run, and the same history.nc (but its
# wall-clock column). Cases:
#   A. 2 ranks, SIGUSR1 to mpirun, which forwards it to both ranks (Open MPI does so
#      for SIGUSR1/SIGUSR2), in the middle of epoch 2; then resume.
#   B. 2 ranks, SIGUSR1 to rank 1 only (rank 0 must learn it through the step's
#      allreduce and still write the checkpoint); then resume.
#   C. 1 rank without mpirun, SIGTERM: 143 and preempt.nc.
# Issue 20, item 2 (Ctrl-C and hard kills):
#   D. 1 rank without mpirun, SIGINT (Ctrl-C): 143 and preempt.nc, like SIGTERM.
#   E. 1 rank, SIGINT and, 0.3 s later inside the same (slowed: debug.step_delay) step, a
#      second SIGINT: the process stops at once (killed by SIGINT, status 130), without a
#      checkpoint.
#   F. 2 ranks, SIGINT to mpirun (what Ctrl-C at a terminal does: mpirun sends SIGCONT to
#      the ranks, SIGTERM 1 s later and SIGKILL 1 s after that, by default; valley starts
#      stopping at the SIGCONT): preempt.nc, and the resume is bit-identical.
#   G. 2 ranks, train.checkpoint_minutes = 0.001 (a checkpoint every 60 ms of wall-clock
#      time) and kill -9 in epoch 3: checkpoints/latest.nc survives, and
#      train.resume = auto continues from the newest checkpoint to the same model.
#   H. a surface sweep on 2 ranks, SIGINT to one rank: 143, surface.nc holds the points
#      computed so far; the same command again computes the rest, and the result equals
#      an uninterrupted sweep.
# The signal is sent once the log shows progress in epoch 2 (no fixed sleep), so the
# test is independent of the machine's speed.
set -u
source "$(dirname "$0")/lib.bash"
test_setup app_signal
bg=""
# on an early exit: kill the run this script started (mpirun's ranks first), by pid
kill_bg() { [[ -n $bg ]] || return 0; local kids; kids=$(pgrep -P "$bg"); kill -KILL $kids "$bg" 2>/dev/null; bg=""; }
cleanup() { kill_bg; rm -rf "$dir"; }
trap cleanup EXIT
EPOCHS=5
deck=(--set model.kind=convnet --set run.seed=9 --set data.train_subset=1280 --set data.test_subset=200
      --set "train.epochs=$EPOCHS")
compare() { # A B [nc_compare options]
    local a=$1 b=$2; shift 2
    "$PYTHON" tests/py/nc_compare.py "$a" "$b" "$@" || err "$a and $b differ"
}

# Waits until LOG shows progress inside epoch 2 while process PID runs.
wait_for_epoch2() { # PID LOG
    local pid=$1 log=$2 i
    for ((i = 0; i < 600; i++)); do
        grep -q "epoch   2/$EPOCHS \[" "$log" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$log"; fail "training ended before it reached epoch 2"; }
        sleep 0.1
    done
    cat "$log"; fail "no progress in epoch 2 after 60 s"
}

# Waits at most 60 s for the background run to end; sets st to its exit status.
wait_bg() {
    local i
    for ((i = 0; i < 600; i++)); do
        kill -0 "$bg" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$bg" 2>/dev/null; then kill_bg; fail "still running 60 s after the signal"; fi
    wait "$bg"; st=$?; bg=""
}

# Checks status 143, the checkpoint and the absence of a final model; prints the position.
check_stopped() { # LABEL STATUS SECONDS_AFTER_SIGNAL
    local label=$1 st=$2 secs=$3 ck=$dir/$1/checkpoints/preempt.nc
    echo "$label: exit status $st, $secs s after the signal"
    [[ $st -eq 143 ]] || { tail -20 "$dir/$label.log"; err "$label: exit status $st, want 143"; }
    [[ $secs -le 30 ]] || err "$label: took $secs s to stop after the signal"
    grep -q "stopped by a signal; resume with --set train.resume=" "$dir/$label.log" ||
        err "$label: no 'stopped by a signal; resume with ...' message"
    [[ -f $ck ]] || { err "$label: no checkpoints/preempt.nc"; return 1; }
    [[ ! -e $dir/$label/model.nc ]] || err "$label: model.nc written by a stopped run"
    "$PYTHON" - "$ck" "$EPOCHS" <<'EOF' || err "$label: preempt.nc unreadable or implausible"
import sys, netCDF4
with netCDF4.Dataset(sys.argv[1]) as f:
    epoch, batch, step, seed = (int(v) for v in f["train_position"][:])
    names = f.getncattr("valley.params").split(",")
    assert all(n in f.variables for n in names), "a tensor of valley.params is missing"
    assert "momentum_buffer" in f.variables
    print(f"preempt.nc: epoch {epoch + 1}, next batch {batch}, step {step}, seed {seed}")
    assert 1 <= epoch < int(sys.argv[2]) and 0 <= batch <= 10 and step == 10 * epoch + batch, "position"
EOF
    # valley itself can read it
    timeout 60 "$VALLEY" evaluate "$ck" --set data.test_subset=100 --out "$dir/$label-eval" >"$dir/$label-eval.log" 2>&1 ||
        { tail "$dir/$label-eval.log"; err "$label: valley evaluate cannot read preempt.nc"; }
}

resume_and_compare() { # LABEL
    local label=$1 ep
    # the epoch the checkpoint holds (the signal lands in epoch 2, but a loaded machine
    # may run on into epoch 3 before the stop: the position is whatever preempt.nc says)
    ep=$("$PYTHON" -c 'import sys, netCDF4; print(int(netCDF4.Dataset(sys.argv[1])["train_position"][0]) + 1)' \
        "$dir/$label/checkpoints/preempt.nc") || { err "$label: cannot read preempt.nc's position"; return; }
    timeout 120 $MPIRUN -np 2 "$VALLEY" train "${deck[@]}" --set train.resume="$dir/$label/checkpoints/preempt.nc" \
        --out "$dir/$label" >"$dir/$label-resume.log" 2>&1 || { tail -20 "$dir/$label-resume.log"; err "$label: resume failed"; return; }
    grep -q "resuming from .*preempt.nc at epoch $ep," "$dir/$label-resume.log" ||
        { grep resuming "$dir/$label-resume.log"; err "$label: resume did not start in epoch $ep, where preempt.nc stopped"; }
    compare "$dir/ref/model.nc" "$dir/$label/model.nc"
    compare "$dir/ref/history.nc" "$dir/$label/history.nc" --exclude time
}

t0=$SECONDS
timeout 120 $MPIRUN -np 2 "$VALLEY" train "${deck[@]}" --out "$dir/ref" >"$dir/ref.log" 2>&1 ||
    { tail -20 "$dir/ref.log"; fail "uninterrupted reference run failed"; }
echo "reference: $EPOCHS epochs on 2 ranks in $((SECONDS - t0)) s"

# A: SIGUSR1 to mpirun
$MPIRUN -np 2 "$VALLEY" train "${deck[@]}" --out "$dir/A" >"$dir/A.log" 2>&1 &
bg=$!
wait_for_epoch2 $bg "$dir/A.log"
kill -USR1 $bg
t1=$SECONDS
wait_bg
check_stopped A $st $((SECONDS - t1)) && resume_and_compare A

# B: SIGUSR1 to rank 1 only
$MPIRUN -np 2 "$VALLEY" train "${deck[@]}" --out "$dir/B" >"$dir/B.log" 2>&1 &
bg=$!
wait_for_epoch2 $bg "$dir/B.log"
rank1=""
for p in $(pgrep -P $bg); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' && rank1=$p
done
[[ -n $rank1 ]] || fail "could not find rank 1 among the children of mpirun ($(pgrep -P $bg | tr '\n' ' '))"
kill -USR1 "$rank1"
t1=$SECONDS
wait_bg
check_stopped B $st $((SECONDS - t1)) && resume_and_compare B

# C: SIGTERM to a 1-rank run without mpirun
"$VALLEY" train "${deck[@]}" --out "$dir/C" >"$dir/C.log" 2>&1 &
bg=$!
wait_for_epoch2 $bg "$dir/C.log"
kill -TERM $bg
t1=$SECONDS
wait_bg
check_stopped C $st $((SECONDS - t1))

# D: SIGINT to a 1-rank run without mpirun. A background job of a script starts with SIGINT
# ignored, which valley then keeps ignoring, like any program; `set -m` cannot undo that when
# this script itself started with SIGINT ignored (a test run launched in the background), so
# the run is started through sigint_default, which sets SIGINT to its default and execs.
sigint_default() { exec "$PYTHON" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' "$@"; }
sigint_default "$VALLEY" train "${deck[@]}" --out "$dir/D" >"$dir/D.log" 2>&1 &
bg=$!
wait_for_epoch2 $bg "$dir/D.log"
kill -INT $bg
t1=$SECONDS
wait_bg
check_stopped D $st $((SECONDS - t1))
grep -q "interrupt (SIGINT): stopping after this step with a checkpoint" "$dir/D.log" || err "D: no notice of the interrupt"

# E: two SIGINTs: the second one ends the run at once, with no checkpoint
sigint_default "$VALLEY" train "${deck[@]}" --set debug.step_delay=2 --set train.log_every=1 --out "$dir/E" >"$dir/E.log" 2>&1 &
bg=$!
for ((i = 0; i < 600; i++)); do grep -q "epoch   1/$EPOCHS \[" "$dir/E.log" 2>/dev/null && break; sleep 0.1; done
kill -INT $bg; sleep 0.3; kill -INT $bg
wait_bg
echo "E: exit status $st after two SIGINTs"
[[ $st -eq 130 ]] || err "E: exit status $st, want 130 (ended by the second SIGINT)"
[[ ! -e $dir/E/checkpoints/preempt.nc ]] || err "E: a checkpoint was written after the second SIGINT"
grep -q "second interrupt: stopping now" "$dir/E.log" || err "E: no notice of the second interrupt"

# F: Ctrl-C at mpirun
$MPIRUN -np 2 "$VALLEY" train "${deck[@]}" --out "$dir/F" >"$dir/F.log" 2>&1 &
bg=$!
wait_for_epoch2 $bg "$dir/F.log"
kill -INT $bg
wait_bg
echo "F: mpirun's exit status $st after SIGINT"
[[ $st -ne 0 ]] || err "F: mpirun exited 0 after SIGINT"
grep -q "mpirun is ending the job" "$dir/F.log" || err "F: valley did not notice mpirun's SIGCONT"
if [[ -f $dir/F/checkpoints/preempt.nc ]]; then resume_and_compare F; else err "F: no preempt.nc after Ctrl-C at mpirun"; fi

# G: timed checkpoints and a hard kill
$MPIRUN -np 2 "$VALLEY" train "${deck[@]}" --set train.checkpoint_minutes=0.001 --out "$dir/G" >"$dir/G.log" 2>&1 &
bg=$!
for ((i = 0; i < 600; i++)); do
    grep -q "epoch   3/$EPOCHS \[" "$dir/G.log" 2>/dev/null && break
    kill -0 $bg 2>/dev/null || break
    sleep 0.1
done
kill_bg
wait 2>/dev/null
grep -q "checkpoint .*/checkpoints/latest.nc at epoch" "$dir/G.log" || err "G: no timed checkpoint logged"
[[ -f $dir/G/checkpoints/latest.nc ]] || err "G: no checkpoints/latest.nc"
if [[ -f $dir/G/checkpoints/latest.nc ]]; then
    timeout 120 $MPIRUN -np 2 "$VALLEY" train "${deck[@]}" --set train.resume=auto --out "$dir/G" >"$dir/G-resume.log" \
        2>&1 || { tail -20 "$dir/G-resume.log"; err "G: resume=auto failed"; }
    grep -q "train.resume = auto: .*/checkpoints/latest.nc" "$dir/G-resume.log" || err "G: auto did not take latest.nc"
    grep -q "taking over the lock left by valley train" "$dir/G-resume.log" || err "G: the killed run's lock not taken over"
    if [[ -n $(find "$dir/G" -name '*.tmp.*') ]]; then err "G: temporary files of the killed run left after the resume"; fi
    compare "$dir/ref/model.nc" "$dir/G/model.nc"
    compare "$dir/ref/history.nc" "$dir/G/history.nc" --exclude time
fi

# H: a surface sweep interrupted by SIGINT, then completed
sdeck=(--set surface.basis=random --set surface.nx=5 --set surface.ny=4 --set surface.chunk=1
       --set surface.flush_seconds=0 --set data.train_subset=512 --set data.test_subset=200)
timeout 120 $MPIRUN -np 2 "$VALLEY" surface "$dir/ref/model.nc" "${sdeck[@]}" --out "$dir/Href" >"$dir/Href.log" 2>&1 ||
    { tail -20 "$dir/Href.log"; err "H: the uninterrupted sweep failed"; }
$MPIRUN -np 2 "$VALLEY" surface "$dir/ref/model.nc" "${sdeck[@]}" --out "$dir/H" >"$dir/H.log" 2>&1 &
bg=$!
for ((i = 0; i < 600; i++)); do
    grep -q "point(s) done" "$dir/H.log" 2>/dev/null && break
    kill -0 $bg 2>/dev/null || break
    sleep 0.05
done
for p in $(pgrep -P $bg); do kill -INT "$p"; break; done
wait_bg
echo "H: surface exit status $st after SIGINT"
[[ $st -eq 143 ]] || { tail -5 "$dir/H.log"; err "H: exit status $st, want 143"; }
grep -q "stopped by a signal" "$dir/H.log" || err "H: no 'stopped by a signal' message"
[[ -f $dir/H/surface.nc ]] || err "H: no partial surface.nc"
timeout 120 $MPIRUN -np 2 "$VALLEY" surface "$dir/ref/model.nc" "${sdeck[@]}" --out "$dir/H" >"$dir/H2.log" 2>&1 ||
    { tail -20 "$dir/H2.log"; err "H: completing the sweep failed"; }
grep -q "(the rest from the previous surface.nc)" "$dir/H2.log" || err "H: the rerun did not reuse the points"
compare "$dir/Href/surface.nc" "$dir/H/surface.nc"

leftovers=$(find "$dir" -name '*.tmp.*')
[[ -z $leftovers ]] || err "temporary files left: $leftovers"
[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "$name: ok"
