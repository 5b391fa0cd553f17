#!/usr/bin/env bash
# Reliability: numerical faults (issue 11). debug.nan_step = S / debug.nan_rank = R make
# world rank R's loss (and its output gradient) NaN in SGD step S. Every rank must detect
# it in that same step (the loss flag and the gradient travel in the step's allreduce),
# end with exit status 3 and one message, through the collective path (no MPI_Abort: a
# rank that missed it would hang in the next allreduce or be aborted), and no checkpoint
# (epoch_*.nc, preempt.nc, model.nc, swag.nc) holding a NaN or an infinity may exist.
# Cases:
#   np1    1 rank without mpirun, NaN in step 6 (epoch 2, batch 2)
#   np2    2 ranks, NaN on rank 1 only
#   np3    3 ranks, NaN on rank 2 only
#   stop   2 ranks, NaN in the very step where a pre-emption is requested
#          (debug.stop_at_step): exit 3 and no preempt.nc
#   allow  2 ranks, train.allow_nonfinite = true: training continues, the weights go
#          NaN, and the guard of the checkpoint writer refuses epoch_0002.nc: exit 3,
#          a message naming the file, no model.nc
#   swa    like allow, with SWAG collection from epoch 1: neither epoch_*.nc with NaN
#          moments nor swag.nc may be written
#   clean  control: the same job without the fault ends 0 with finite files, and the
#          checker below rejects a copy of a checkpoint with one NaN written into it
set -u
source "$(dirname "$0")/lib.bash"
test_setup rel_nan
small=(--set model.kind=mlp --set model.widths=16 --set data.train_subset=512 --set data.test_subset=100
       --set train.epochs=3 --set train.checkpoint_every=1 --set run.seed=3)

# Every checkpoint-like file under DIR: readable, all floating variables and the
# running-sum attribute finite. Prints what it checked; exit 1 on a non-finite value.
check_finite() { # DIR
    "$PYTHON" - "$1" <<'EOF'
import os, sys
import numpy as np, netCDF4
bad, n = [], 0
for root, _, files in os.walk(sys.argv[1]):
    for fn in files:
        p = os.path.join(root, fn)
        rel = os.path.relpath(p, sys.argv[1])
        if ".tmp." in fn:
            bad.append(f"{rel}: temporary file left"); continue
        if not fn.endswith(".nc") or fn == "history.nc":
            continue
        n += 1
        with netCDF4.Dataset(p) as f:
            for name, v in f.variables.items():
                if v.dtype.kind != "f":
                    continue
                v.set_auto_mask(False)
                if not np.all(np.isfinite(v[...])):
                    bad.append(f"{rel}: variable {name} holds non-finite values")
                for a in v.ncattrs():
                    val = np.asarray(v.getncattr(a))
                    if val.dtype.kind == "f" and not np.all(np.isfinite(val)):
                        bad.append(f"{rel}: attribute {name}:{a} holds non-finite values")
print(f"  {n} checkpoint file(s) checked")
for b in bad:
    print("  " + b)
sys.exit(1 if bad else 0)
EOF
}

# run_case LABEL NP WANT_STATUS PATTERN [--set ...]: runs the job (NP=0: no mpirun)
run_case() {
    local label=$1 np=$2 want=$3 pat=$4 out=$dir/$1 log=$dir/$1.log st
    shift 4
    if [[ $np -eq 0 ]]; then
        timeout 60 "$VALLEY" train "${small[@]}" "$@" --out "$out" >"$log" 2>&1
    else
        timeout 60 $MPIRUN -np "$np" "$VALLEY" train "${small[@]}" "$@" --out "$out" >"$log" 2>&1
    fi
    st=$?
    echo "$label: exit status $st: $(grep -m1 '^valley:' "$log")"
    [[ $st -ne 124 ]] || { err "$label: still running after 60 s (hang)"; return; }
    [[ $st -eq $want ]] || { sed 's/^/    | /' "$log" | tail -15; err "$label: exit status $st, want $want"; }
    if [[ $want -ne 0 ]]; then
        local n
        n=$(grep -c -- "$pat" "$log")
        [[ $n -eq 1 ]] || err "$label: message '$pat' printed $n times, want once"
        [[ $(grep -c '^valley:' "$log") -eq 1 ]] || err "$label: more than one valley: message"
        ! grep -q "MPI_ABORT" "$log" || err "$label: ended through MPI_Abort, not by every rank agreeing"
        [[ ! -e $out/model.nc ]] || err "$label: model.nc written by a failed run"
    fi
    check_finite "$out" || err "$label: a checkpoint with non-finite values (or a tmp file) exists"
}

run_case np1 0 3 "non-finite loss on 1 rank at epoch 2, batch 2 (SGD step 6" \
    --set debug.nan_step=6 --set debug.nan_rank=0
[[ -f $dir/np1/checkpoints/epoch_0001.nc ]] || err "np1: the epoch-1 checkpoint written before the fault is missing"
run_case np2 2 3 "non-finite loss on 1 rank at epoch 2, batch 2 (SGD step 6" \
    --set debug.nan_step=6 --set debug.nan_rank=1
run_case np3 3 3 "non-finite loss on 1 rank at epoch 1, batch 3 (SGD step 3" \
    --set debug.nan_step=3 --set debug.nan_rank=2
[[ ! -e $dir/np3/checkpoints/epoch_0001.nc ]] || err "np3: epoch_0001.nc written although the NaN came in epoch 1"
run_case stop 2 3 "non-finite loss on 1 rank at epoch 2, batch 3 (SGD step 7" \
    --set debug.nan_step=7 --set debug.nan_rank=0 --set debug.stop_at_step=7
[[ ! -e $dir/stop/checkpoints/preempt.nc ]] || err "stop: preempt.nc written in the step of the NaN"
run_case allow 2 3 "$dir/allow/checkpoints/epoch_0002.nc: not written: non-finite values in the weights" \
    --set debug.nan_step=6 --set debug.nan_rank=1 --set train.allow_nonfinite=true
run_case swa 2 3 "epoch_0002.nc: not written: non-finite values in the" \
    --set debug.nan_step=6 --set debug.nan_rank=1 --set train.allow_nonfinite=true \
    --set train.swag=true --set train.swa_start=1 --set train.swag_rank=2
[[ ! -e $dir/swa/swag.nc ]] || err "swa: swag.nc written"

# control: no fault -> 0, finite files; and the checker must catch a NaN
run_case clean 2 0 "" --set debug.nan_step=0
[[ -f $dir/clean/model.nc ]] || err "clean: no model.nc"
mkdir -p "$dir/doctored"
cp "$dir/clean/model.nc" "$dir/doctored/model.nc"
"$PYTHON" - "$dir/doctored/model.nc" <<'EOF' || fail "could not doctor the control file"
import sys, numpy as np, netCDF4
with netCDF4.Dataset(sys.argv[1], "a") as f:
    name = f.getncattr("valley.params").split(",")[0]
    v = f[name]
    a = np.array(v[...]); a.flat[0] = np.nan; v[...] = a
EOF
if check_finite "$dir/doctored" >/dev/null; then err "the finiteness checker accepted a file with a NaN"; fi

[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "$name: ok"
