#!/usr/bin/env bash
# End-to-end: what a new user trips on (issue 20). Each block failed on b106722.
#  1. run directories: a command holding a directory (valley.lock) keeps a second one out
#     (also when the holder is slow to write who it is, and retakes it if that holder dies)
#     (exit 2 naming the owner: command, pid, host); two runs started together end with one
#     result, the winner's, bit-identical to that run alone; a lock left by a kill -9 is
#     taken over; a directory under a locked one is refused; a finished run is kept from
#     another deck and from another command (exit 2 naming the difference), the same deck
#     goes on, run.overwrite = true replaces it.
#  3. resuming with a changed deck: the change is printed and recorded in history.nc
#     (attribute `resumes`); a changed data subset is refused unless train.resume_force.
#  5. keys that repeat what a file says: infer on a rank-2 subspace without infer.rank;
#     bma of a swag.nc holding more deviations than the default train.swag_rank.
#  6. a deck with a UTF-8 byte-order mark; a deck not named .ini, and /dev/null; a curve
#     from a model to itself (exit 2); evaluate of an eval.nc (exit 2, says what it is).
set -u
source "$(dirname "$0")/lib.bash"
test_setup app_newuser
bg=""
kill_bg() { [[ -n $bg ]] || return 0; kill -KILL $(pgrep -P "$bg") "$bg" 2>/dev/null; wait "$bg" 2>/dev/null; bg=""; }
trap 'kill_bg; rm -rf "$dir"' EXIT
tiny=(--set model.kind=mlp --set model.widths=32 --set data.train_subset=512 --set data.test_subset=200
      --set train.epochs=2 --set train.batch_size=64)
# v LABEL WANT_STATUS args...: runs valley, log in $dir/LABEL.log
v() {
    local label=$1 want=$2 st
    shift 2
    timeout 120 "$VALLEY" "$@" >"$dir/$label.log" 2>&1
    st=$?
    [[ $st -eq $want ]] || { err "$label: valley $1 exit status $st, want $want"; tail -5 "$dir/$label.log" | sed 's/^/    | /'; }
    return 0
}
has() { grep -qF -- "$2" "$dir/$1.log" || { err "$1: the output lacks '$2'"; tail -5 "$dir/$1.log" | sed 's/^/    | /'; }; }
# a training that holds its directory for a while: every step waits 0.5 s
slow_train() { # OUT [--set ...]
    local out=$1; shift
    "$VALLEY" train "${tiny[@]}" --set debug.step_delay=0.5 "$@" --out "$out" >"$dir/slow.log" 2>&1 &
    bg=$!
    for ((i = 0; i < 300; i++)); do [[ -f $out/valley.lock ]] && return 0; sleep 0.05; done
    err "the slow training did not take $out (no valley.lock)"
}

# ---- 1. run directories
slow_train "$dir/busy" --set run.seed=1
v busy 2 train "${tiny[@]}" --set run.seed=2 --out "$dir/busy"
has busy "$dir/busy is in use by valley train (pid $bg on host $(hostname)"
v nested 2 evaluate "$dir/busy/no_model.nc" --out "$dir/busy/eval"
has nested "is inside $dir/busy, which is in use by valley train"
kill -KILL "$bg"; wait "$bg" 2>/dev/null; bg=""
[[ -f $dir/busy/valley.lock ]] || err "the killed run's lock file is gone (nothing left to take over)"
v takeover 0 train "${tiny[@]}" --set run.seed=1 --set train.resume=auto --out "$dir/busy"
has takeover "taking over the lock left by valley train (pid"
has takeover "which is no longer running"
[[ ! -e $dir/busy/valley.lock ]] || err "the lock file is left after a finished run"
grep -q '^state = finished$' "$dir/busy/valley-run.txt" || err "valley-run.txt does not say finished"

# a holder held back between taking the lock and writing who it is (a loaded node: CI saw
# "in use by valley ?"): the refused run waits for the record and names the holder
mkdir -p "$dir/slowrec"
"$PYTHON" - "$dir/slowrec/valley.lock" "$(hostname)" <<'PY' &
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
open(sys.argv[1] + ".held", "w").close()
time.sleep(2.5)
os.pwrite(fd, ("command = slowholder\npid = %d\nhost = %s\nslurm_job = \nstarted = 2026-12-04T00:00:00Z\n"
               % (os.getpid(), sys.argv[2])).encode(), 0)
time.sleep(1.5)
PY
holder=$!
for ((i = 0; i < 200; i++)); do [[ -f $dir/slowrec/valley.lock.held ]] && break; sleep 0.05; done
v slowrec 2 train "${tiny[@]}" --out "$dir/slowrec"
has slowrec "$dir/slowrec is in use by valley slowholder (pid $holder on host $(hostname)"
wait $holder
rm -f "$dir/slowrec/valley.lock.held"
# and a holder that lets go before writing (it died): the waiting run takes the directory
"$PYTHON" - "$dir/slowrel/valley.lock" <<'PY' &
import fcntl, os, sys, time
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
open(sys.argv[1] + ".held", "w").close()
time.sleep(1.5)
PY
holder=$!
for ((i = 0; i < 200; i++)); do [[ -f $dir/slowrel/valley.lock.held ]] && break; sleep 0.05; done
rm -f "$dir/slowrel/valley.lock.held"
v slowrel 0 train "${tiny[@]}" --out "$dir/slowrel"
wait $holder

# two runs started together into one directory: one result, the winner's
v alone1 0 train "${tiny[@]}" --set run.seed=1 --out "$dir/alone1"
v alone2 0 train "${tiny[@]}" --set run.seed=2 --out "$dir/alone2"
"$VALLEY" train "${tiny[@]}" --set run.seed=1 --out "$dir/race" >"$dir/race1.log" 2>&1 & p1=$!
"$VALLEY" train "${tiny[@]}" --set run.seed=2 --out "$dir/race" >"$dir/race2.log" 2>&1 & p2=$!
wait $p1; s1=$?; wait $p2; s2=$?
echo "race: seed 1 exit $s1, seed 2 exit $s2"
if [[ $s1 -eq 0 && $s2 -eq 2 ]]; then win=1; lose=2
elif [[ $s1 -eq 2 && $s2 -eq 0 ]]; then win=2; lose=1
else win=""; err "race: exit statuses $s1 and $s2, want one 0 and one 2"; fi
if [[ -n $win ]]; then
    grep -qE "is in use by valley train|holds a finished run .* of \`valley train\` with another deck \(run.seed" \
        "$dir/race$lose.log" || { err "race: the refused run does not say why"; cat "$dir/race$lose.log"; }
    "$PYTHON" tests/py/nc_compare.py "$dir/alone$win/model.nc" "$dir/race/model.nc" >/dev/null ||
        err "race: model.nc is not the winner's (seed $win) run"
    grep -q "^seed = $win$" "$dir/race/valley-run.txt" || err "race: valley-run.txt does not record seed $win"
fi

# a finished run: another deck and another command are refused; the same deck goes on
v redo_same 0 train "${tiny[@]}" --set run.seed=1 --out "$dir/alone1"
v redo_other 2 train "${tiny[@]}" --set run.seed=1 --set train.lr=0.1 --out "$dir/alone1"
has redo_other "holds a finished run"
has redo_other "of \`valley train\` with another deck (train.lr: 0.05 -> 0.1)"
has redo_other "--set run.overwrite=true"
v other_cmd 2 evaluate "$dir/alone2/model.nc" --out "$dir/alone1"
has other_cmd "holds a finished run"
has other_cmd "of \`valley train\`; \`valley evaluate\` would write over it"
v overwrite 0 train "${tiny[@]}" --set run.seed=1 --set train.lr=0.1 --set run.overwrite=true --out "$dir/alone1"
has overwrite "replacing it (run.overwrite = true)"
grep -q '^lr = 0.1$' "$dir/alone1/valley-run.txt" || err "overwrite: valley-run.txt does not record the new deck"

# ---- 3. resuming with a changed deck
v base 0 train "${tiny[@]}" --set train.epochs=3 --set train.checkpoint_every=1 --out "$dir/res"
ck=$dir/res/checkpoints/epoch_0001.nc
v res_lr 0 train "${tiny[@]}" --set train.epochs=3 --set train.lr=0.02 --set train.resume="$ck" --out "$dir/res"
has res_lr "resume: train.lr changes from 0.05 to 0.02"
"$PYTHON" - "$dir/res/history.nc" "$ck" <<'EOF' || err "history.nc does not record the resume and its change"
import sys, netCDF4
with netCDF4.Dataset(sys.argv[1]) as f:
    r = f.getncattr("resumes")
print("history.nc resumes:", r.strip())
assert "resumed at epoch 2, batch 0" in r and sys.argv[2] in r and "train.lr 0.05 -> 0.02" in r
EOF
v res_subset 2 train "${tiny[@]}" --set train.epochs=3 --set data.train_subset=256 --set train.resume="$ck" --out "$dir/res"
has res_subset "resuming with data.train_subset = 256, but the checkpoint's run used 512"
has res_subset "train.resume_force=true"
v res_force 0 train "${tiny[@]}" --set train.epochs=3 --set data.train_subset=256 --set train.resume="$ck" \
    --set train.resume_force=true --out "$dir/res"
has res_force "resume: data.train_subset changes from 512 to 256 (train.resume_force)"

# ---- 5. what the input files say
v swag 0 train "${tiny[@]}" --set train.epochs=3 --set train.swag=true --set train.swag_rank=30 \
    --set train.swa_start=1 --set train.swa_freq=10 --out "$dir/swag"
v bma 0 bma "$dir/swag/swag.nc" --set bma.samples=2 --set bma.methods=swag --set data.test_subset=200 \
    --set data.train_subset=256 --out "$dir/bma"
v pca 0 pca "$dir/swag/swag.nc" --set pca.rank=2 --out "$dir/pca"
v infer 0 infer "$dir/pca/subspace.nc" --set infer.samples=2 --set infer.burnin=0 --set data.train_subset=256 \
    --set data.test_subset=200 --out "$dir/infer"
"$PYTHON" - "$dir/infer/infer.nc" <<'EOF' || err "infer.nc does not hold a 2-dimensional subspace"
import sys, netCDF4
with netCDF4.Dataset(sys.argv[1]) as f:
    assert len(f.dimensions["k"]) == 2 and f["z"].shape[1] == 2, f["z"].shape
EOF

# ---- 6. deck and command-line frictions
printf '\xef\xbb\xbf[train]\nepochs = 1\n' >"$dir/bom.ini"
v bom 0 train "$dir/bom.ini" "${tiny[@]}" --set train.epochs=1 --out "$dir/bom"
printf '# my settings\n[train]\nlr = 0.03\n' >"$dir/settings.txt"
v txt_deck 0 train "$dir/settings.txt" "${tiny[@]}" --out "$dir/txt"
"$PYTHON" - "$dir/txt/model.nc" <<'EOF' || err "a deck named .txt was not read as the deck"
import sys, netCDF4
with netCDF4.Dataset(sys.argv[1]) as f:
    assert "\nlr = 0.03" in f.getncattr("deck")
EOF
v devnull 0 train /dev/null "${tiny[@]}" --out "$dir/devnull"
printf 'just some notes\n' >"$dir/notes.txt"
v not_deck 2 train "$dir/notes.txt" "${tiny[@]}" --out "$dir/notes"
has not_deck "train takes no input files, got '$dir/notes.txt' (a deck: name it .ini"
v curve_self 2 curve "$dir/alone2/model.nc" "$dir/alone2/model.nc" --out "$dir/curve"
has curve_self "hold the same weights: a curve from a model to itself has nothing to connect"
v eval_nc 0 evaluate "$dir/alone2/model.nc" --out "$dir/ev"
v eval_eval 2 evaluate "$dir/ev/eval.nc" --out "$dir/ev2"
has eval_eval "$dir/ev/eval.nc is a file of valley evaluation, not a model"

[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "$name: ok"
