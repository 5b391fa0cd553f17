#!/usr/bin/env bash
# End-to-end: a failure that only one rank knows about (debug.fail_rank: that rank
# fails alone after loading its data while the others go on to train and wait in
# the first collective) must end the whole job quickly with a non-zero status and a
# message naming the rank, instead of hanging. Checked for rank 1 of 2 (the brief's
# case), rank 0 of 2 (the printing rank fails) and rank 2 of 4. Limit: 30 s each
# (run under `timeout 60` so that a hang is reported, not waited out).
set -u
source "$(dirname "$0")/lib.bash"
test_setup app_fail_alone

for case in "2 1" "2 0" "4 2"; do
    read -r np rank <<<"$case"
    label=np${np}_rank$rank
    start=$(date +%s.%N)
    timeout 60 $MPIRUN -np "$np" "$VALLEY" train --set debug.fail_rank="$rank" --set model.kind=convnet \
        --set data.train_subset=1280 --set data.test_subset=200 --set train.epochs=20 \
        --out "$dir/$label" >"$dir/$label.log" 2>&1
    st=$?
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    echo "$label: exit status $st after $secs s"
    if [[ $st -eq 124 ]]; then
        err "$label: still running after 60 s (hang)"; tail -20 "$dir/$label.log"; continue
    fi
    [[ $st -ne 0 ]] || err "$label: exit status 0"
    awk -v s="$secs" 'BEGIN { exit !(s <= 30) }' || err "$label: took $secs s (limit 30 s)"
    grep -qE "on rank $rank\b" "$dir/$label.log" || { tail -20 "$dir/$label.log"; err "$label: no message naming rank $rank"; }
    grep -q "simulated failure" "$dir/$label.log" || err "$label: the failure's own message is not printed"
    [[ ! -e $dir/$label/model.nc && ! -e $dir/$label/history.nc ]] || err "$label: outputs written by a failed job"
done
leftovers=$(find "$dir" -name '*.tmp.*')
[[ -z $leftovers ]] || err "temporary files left: $leftovers"
[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "$name: ok"
