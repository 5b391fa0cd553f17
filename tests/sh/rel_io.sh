#!/usr/bin/env bash
# Reliability: I/O faults (issue 11). The output directory sits on a small tmpfs
# (mount -t tmpfs -o size=...; needs root or CAP_SYS_ADMIN, which this test requires:
# without it, it prints SKIP and exits 0) so that writes really fail with ENOSPC or EROFS
# in the kernel, not through a simulation. Expected in every case: exit status 4, one
# message naming the file (printed once, through the collective path: no MPI_Abort),
# the checkpoints written before intact (bit-identical to a reference run's and usable:
# resuming from one finishes bit-identical to the uninterrupted run), and no *.tmp.*
# left and no file under a final name that was not completely written.
#   full_ckpt     2 ranks; room for epoch_0001.nc and history.nc but not epoch_0002.nc
#   full_preempt  2 ranks; the same room, a pre-emption (debug.stop_at_step) in epoch 2:
#                 preempt.nc cannot be written -> 4 (not 143)
#   full_start    1 rank without mpirun; 8 KiB: the first file (history.nc) fails
#   ro_resume     2 ranks; the run directory (with epoch_0001.nc) remounted read-only,
#                 then resumed from it: its lock (the first file a command writes) cannot
#                 be created (EROFS)
#   ro_fresh      2 ranks; a new output directory on the read-only mount: the
#                 directories cannot be created
#   full_sweep    1 rank; 8 tmpfs sizes from 8 KiB to two checkpoints: the disk fills up
#                 at a different write each time; never a crash, no tmp file, every
#                 final file readable
#   pca_full      `valley pca` (subspace.nc, written in parallel through HDF5 and MPI-IO)
#                 on 1, 2 and 4 ranks into a tmpfs of half the file's size, and on 2 ranks
#                 into 8 KiB: 4, one message naming subspace.nc, no tmp, no crash or
#                 sanitizer report; into a tmpfs of the file's size + 192 KiB: success and
#                 the file bit-identical to one written on the ordinary disk
set -u
source "$(dirname "$0")/lib.bash"
test_setup rel_io
mounts=()
cleanup() {
    local m
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT

# mount_tmpfs DIR SIZE: a fresh tmpfs of SIZE (e.g. 640k) on DIR
mount_tmpfs() {
    mkdir -p "$1"
    mount -t tmpfs -o "size=$2,mode=0755" tmpfs "$1" 2>"$dir/mount.err" || return 1
    mounts+=("$1")
}
if ! mount_tmpfs "$dir/probe" 64k; then
    echo "SKIP: rel_io: cannot mount a tmpfs here ($(cat "$dir/mount.err")); needs root or CAP_SYS_ADMIN"
    exit 0
fi

EPOCHS=3
deck=(--set model.kind=mlp --set model.widths=64 --set data.train_subset=512 --set data.test_subset=100
      --set "train.epochs=$EPOCHS" --set train.checkpoint_every=1 --set run.seed=4)
compare() { "$PYTHON" tests/py/nc_compare.py "$@" >/dev/null || err "$1 and $2 differ"; }
readable() { # FILE: opens with python's netCDF4 and reads every variable
    "$PYTHON" -c 'import sys, netCDF4
with netCDF4.Dataset(sys.argv[1]) as f:
    for v in f.variables.values(): v[...]' "$1" 2>/dev/null || err "$1 is not a readable NetCDF file"
}

# expect_io LABEL NP PATTERN... -- ARGS: runs valley train (NP=0: no mpirun), wants 4 and
# every PATTERN (fixed strings) in the one 'valley:' line.
expect_io() {
    local label=$1 np=$2 log=$dir/$1.log st
    shift 2
    local pats=()
    while [[ $1 != -- ]]; do pats+=("$1"); shift; done
    shift
    if [[ $np -eq 0 ]]; then
        timeout 60 "$VALLEY" train "${deck[@]}" "$@" >"$log" 2>&1
    else
        timeout 60 $MPIRUN -np "$np" "$VALLEY" train "${deck[@]}" "$@" >"$log" 2>&1
    fi
    st=$?
    local msg
    msg=$(grep '^valley:' "$log")
    echo "$label: exit status $st: $msg"
    [[ $st -ne 124 ]] || { err "$label: hang (still running after 60 s)"; return; }
    [[ $st -eq 4 ]] || { sed 's/^/    | /' "$log" | tail -15; err "$label: exit $st, want 4"; }
    [[ $(grep -c '^valley:' "$log") -eq 1 ]] || err "$label: want exactly one 'valley:' message"
    ! grep -q MPI_ABORT "$log" || err "$label: ended through MPI_Abort"
    local p
    for p in "${pats[@]}"; do [[ $msg == *"$p"* ]] || err "$label: message lacks '$p'"; done
}
no_tmp() { # DIR LABEL
    local left
    left=$(find "$1" -name '*.tmp.*')
    [[ -z $left ]] || err "$2: temporary files left: $left"
}

# reference run on the ordinary disk: sizes and the expected contents
t0=$SECONDS
timeout 60 $MPIRUN -np 2 "$VALLEY" train "${deck[@]}" --out "$dir/ref" >"$dir/ref.log" 2>&1 ||
    { tail "$dir/ref.log"; fail "reference run failed"; }
C=$(stat -c %s "$dir/ref/checkpoints/epoch_0001.nc")
H=$(stat -c %s "$dir/ref/history.nc")
echo "reference: $EPOCHS epochs in $((SECONDS - t0)) s; checkpoint $C bytes, history $H bytes"
# room for one checkpoint, the history (twice during its replacement) and half a checkpoint
room=$(( (C + 3 * H + C / 2 + 4095) / 4096 * 4 ))k

# ---- full_ckpt
mount_tmpfs "$dir/full1" "$room" || fail "mount failed"
expect_io full_ckpt 2 "$dir/full1/run/checkpoints/epoch_0002.nc" "No space left on device" -- --out "$dir/full1/run"
no_tmp "$dir/full1" full_ckpt
[[ ! -e $dir/full1/run/checkpoints/epoch_0002.nc && ! -e $dir/full1/run/model.nc ]] ||
    err "full_ckpt: a file was written after the disk filled up"
if [[ -f $dir/full1/run/checkpoints/epoch_0001.nc ]]; then
    readable "$dir/full1/run/checkpoints/epoch_0001.nc"
    compare "$dir/ref/checkpoints/epoch_0001.nc" "$dir/full1/run/checkpoints/epoch_0001.nc"
    # the survivor is usable: resume from it elsewhere, finish bit-identical
    mkdir -p "$dir/resumed/checkpoints"
    cp "$dir/full1/run/checkpoints/epoch_0001.nc" "$dir/resumed/checkpoints/"
    cp "$dir/full1/run/history.nc" "$dir/resumed/"
    if timeout 60 $MPIRUN -np 2 "$VALLEY" train "${deck[@]}" --set train.resume="$dir/resumed/checkpoints/epoch_0001.nc" \
        --out "$dir/resumed" >"$dir/resumed.log" 2>&1; then
        compare "$dir/ref/model.nc" "$dir/resumed/model.nc"
        compare "$dir/ref/history.nc" "$dir/resumed/history.nc" --exclude time
        echo "full_ckpt: resumed from the surviving epoch_0001.nc: model.nc bit-identical to the reference"
    else
        tail "$dir/resumed.log"; err "full_ckpt: resuming from the surviving checkpoint failed"
    fi
else
    err "full_ckpt: epoch_0001.nc (written before the disk filled up) is missing"
fi

# ---- full_preempt: epoch 2's step 6 asks for a pre-emption checkpoint on a full disk
mount_tmpfs "$dir/full2" "$room" || fail "mount failed"
expect_io full_preempt 2 "$dir/full2/run/checkpoints/preempt.nc" "No space left on device" -- \
    --set debug.stop_at_step=6 --out "$dir/full2/run"
no_tmp "$dir/full2" full_preempt
[[ ! -e $dir/full2/run/checkpoints/preempt.nc ]] || err "full_preempt: preempt.nc exists"
if [[ -f $dir/full2/run/checkpoints/epoch_0001.nc ]]; then
    compare "$dir/ref/checkpoints/epoch_0001.nc" "$dir/full2/run/checkpoints/epoch_0001.nc"
else
    err "full_preempt: epoch_0001.nc missing"
fi

# ---- full_start: nothing fits
mount_tmpfs "$dir/full3" 8k || fail "mount failed"
expect_io full_start 0 "$dir/full3/run/history.nc" "No space left on device" -- --out "$dir/full3/run"
no_tmp "$dir/full3" full_start
left=$(find "$dir/full3" -name '*.nc')
[[ -z $left ]] || err "full_start: files written: $left"

# ---- ro_resume: a run directory holding epoch_0001.nc, made read-only, resumed into
mount_tmpfs "$dir/ro" 2m || fail "mount failed"
mkdir -p "$dir/ro/run/checkpoints"
cp "$dir/ref/checkpoints/epoch_0001.nc" "$dir/ro/run/checkpoints/"
cp "$dir/ref/history.nc" "$dir/ro/run/"
sum_before=$(md5sum "$dir/ro/run/checkpoints/epoch_0001.nc" "$dir/ro/run/history.nc")
mount -o remount,ro "$dir/ro" || fail "remount read-only failed"
expect_io ro_resume 2 "$dir/ro/run/valley.lock" "Read-only file system" -- \
    --set train.resume="$dir/ro/run/checkpoints/epoch_0001.nc" --out "$dir/ro/run"
[[ $(md5sum "$dir/ro/run/checkpoints/epoch_0001.nc" "$dir/ro/run/history.nc") == "$sum_before" ]] ||
    err "ro_resume: the existing files changed"

# ---- ro_fresh: a new output directory under the read-only mount
expect_io ro_fresh 2 "$dir/ro/fresh" "Read-only file system" -- --out "$dir/ro/fresh"
[[ ! -e $dir/ro/fresh ]] || err "ro_fresh: the directory exists"

# ---- full_sweep: the disk fills up at 8 different points of the run (1 rank): every run
# ends with 0 or 4 (never a crash: netCDF/HDF5 crash when closing a file whose write
# failed, which ncio avoids by writing files from memory), leaves no tmp file, and every
# file under a final name is readable
swept=0
for kb in 8 24 $(( (H + 4095) / 1024 )) $(( (C / 2) / 1024 )) $(( C / 1024 )) $(( (C + 2 * H) / 1024 + 8 )) \
          $(( (3 * C / 2) / 1024 )) $(( (2 * C + 3 * H) / 1024 + 8 )); do
    mount_tmpfs "$dir/sweep$kb" "${kb}k" || fail "mount failed"
    timeout 60 "$VALLEY" train "${deck[@]}" --out "$dir/sweep$kb/run" >"$dir/sweep$kb.log" 2>&1
    st=$?
    swept=$((swept + 1))
    [[ $st -eq 0 || $st -eq 4 ]] || { tail -5 "$dir/sweep$kb.log"; err "full_sweep ${kb} KiB: exit status $st"; }
    no_tmp "$dir/sweep$kb" "full_sweep ${kb} KiB"
    for f in $(find "$dir/sweep$kb" -name '*.nc'); do readable "$f"; done
    echo "full_sweep: ${kb} KiB: exit status $st, files: $(cd "$dir/sweep$kb" && find . -name '*.nc' | sort | tr '\n' ' ')"
    umount "$dir/sweep$kb"
done

# ---- pca_full: the parallel writer (ncio_create_par) on a full disk. Before the reservation
# of ncio.c, HDF5 met the full disk inside nc_enddef: a segfault at MPI_Finalize (1 rank) or
# a hang (2 ranks).
"$VALLEY" train "${deck[@]}" --set train.checkpoint_every=0 --set train.swag=true \
    --set train.swa_start=1 --set train.swa_freq=1 --set train.swag_rank=3 --out "$dir/swag" \
    >"$dir/swag.log" 2>&1 ||
    { tail "$dir/swag.log"; fail "the SWAG run for pca failed"; }
pca=("$dir/swag/swag.nc" --set pca.rank=2)
# pca_run LABEL NP OUT: valley pca; sets st and log
pca_run() {
    log=$dir/$1.log
    timeout 60 $MPIRUN -np "$2" "$VALLEY" pca "${pca[@]}" --out "$3" >"$log" 2>&1
    st=$?
    [[ $st -ne 124 ]] || err "$1: hang (still running after 60 s)"
    ! grep -qE 'Sanitizer|runtime error|Segmentation|signal [0-9]|MPI_ABORT' "$log" ||
        { sed 's/^/    | /' "$log" | tail -15; err "$1: a crash, a sanitizer report or MPI_Abort"; }
}
for np in 1 2 4; do
    pca_run "pca_ref$np" "$np" "$dir/pca_ref$np"
    [[ $st -eq 0 ]] || { tail "$log"; fail "pca on $np ranks on the ordinary disk: exit $st"; }
done
S=$(stat -c %s "$dir/pca_ref2/subspace.nc")
echo "pca: subspace.nc is $S bytes"
for c in "1 $((S / 2048))k" "2 $((S / 2048))k" "4 $((S / 2048))k" "2 8k"; do
    read -r np size <<<"$c"
    label="pca_full np=$np tmpfs=$size"
    mount_tmpfs "$dir/pfull$np$size" "$size" || fail "mount failed"
    pca_run "pca_full$np$size" "$np" "$dir/pfull$np$size/pca"
    msg=$(grep '^valley:' "$log")
    echo "$label: exit status $st: $msg"
    [[ $st -eq 4 ]] || { sed 's/^/    | /' "$log" | tail -15; err "$label: exit $st, want 4"; }
    [[ $(grep -c '^valley:' "$log") -eq 1 ]] || err "$label: want exactly one 'valley:' message"
    for p in "$dir/pfull$np$size/pca/subspace.nc: cannot write" "No space left on device"; do
        [[ $msg == *"$p"* ]] || err "$label: message lacks '$p'"
    done
    no_tmp "$dir/pfull$np$size" "$label"
    [[ ! -e $dir/pfull$np$size/pca/subspace.nc ]] || err "$label: subspace.nc exists"
    umount "$dir/pfull$np$size"
done
room=$(( (S + 4095) / 4096 * 4 + 192 ))k
for np in 1 2 4; do
    label="pca_room np=$np tmpfs=$room"
    mount_tmpfs "$dir/proom$np" "$room" || fail "mount failed"
    pca_run "pca_room$np" "$np" "$dir/proom$np/pca"
    echo "$label: exit status $st"
    [[ $st -eq 0 ]] || { sed 's/^/    | /' "$log" | tail -15; err "$label: exit $st, want 0"; }
    no_tmp "$dir/proom$np" "$label"
    out=$dir/proom$np/pca/subspace.nc
    if [[ -f $out ]]; then compare "$dir/pca_ref$np/subspace.nc" "$out"; else err "$label: no $out"; fi
    umount "$dir/proom$np"
done

[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "$name: ok"
