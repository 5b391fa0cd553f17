#!/usr/bin/env bash
# Reliability: hostile input replay (issue 11). Every file of tests/corpus/<reader>/ (the
# hand-made malformed inputs of tests/fuzz/make_corpus.py and the inputs the fuzz
# campaign tests/fuzz/run.sh kept) goes through bin/valley the way its fuzz target feeds
# the reader (tests/fuzz/replay.py: deck -> `valley help train DECK`, idx/csv ->
# `valley prepare`, onnx -> `valley import`, dataset -> `valley train --set data.path=F`, checkpoint ->
# `valley evaluate F`, subspace -> `valley surface F --set surface.basis=pca`). Each must
# end with exit status 2 and a "valley:" message: a crash (status >= 128), a sanitizer
# report, a hang (60 s) or any other status fails. Run it on the sanitizer build too:
#   BUILD=build/san VALLEY=build/san/valley tests/run.sh rel_corpus
set -u
source "$(dirname "$0")/lib.bash"
test_setup rel_corpus
export VALLEY FIXTURE=$PWD/tests/corpus/fixtures/tiny.nc
[[ -f $FIXTURE ]] || fail "missing $FIXTURE"
# one_file READER FILE WORK: replays and writes WORK/verdict ("ok" or the problem)
one_file() {
    local reader=$1 f=$2 work=$3 st
    "$PYTHON" tests/fuzz/replay.py "$reader" "$f" "$work"
    st=$?
    local log=$work/valley.log v=ok
    if [[ $st -ne 2 ]]; then v="exit status $st, want 2"
    elif ! grep -q '^valley: ' "$log"; then v="no 'valley:' message"
    elif grep -qE 'Sanitizer|runtime error:' "$log"; then v="sanitizer report"
    fi
    echo "$v" >"$work/verdict"
}
n=0
declare -A per
jobs_running=0
for reader in deck idx csv cifar onnx dataset checkpoint subspace; do
    for f in tests/corpus/$reader/*; do
        [[ -f $f ]] || continue
        n=$((n + 1)); per[$reader]=$(( ${per[$reader]:-0} + 1 ))
        mkdir -p "$dir/w$n"
        echo "$reader/$(basename "$f")" >"$dir/w$n/name"
        one_file "$reader" "$f" "$dir/w$n" &
        jobs_running=$((jobs_running + 1))
        if [[ $jobs_running -ge 4 ]]; then wait -n; jobs_running=$((jobs_running - 1)); fi
    done
done
wait
for ((i = 1; i <= n; i++)); do
    v=$(cat "$dir/w$i/verdict" 2>/dev/null || echo "no verdict")
    if [[ $v != ok ]]; then
        err "$(cat "$dir/w$i/name"): $v"; sed 's/^/    | /' "$dir/w$i/valley.log" 2>/dev/null | head -8
    fi
done
summary=""
for reader in deck idx csv cifar onnx dataset checkpoint subspace; do summary+=" $reader ${per[$reader]:-0},"; done
echo "replayed $n corpus files:${summary%,}"
[[ $n -gt 0 ]] || fail "no corpus files"
[[ $errors -eq 0 ]] || fail "$errors of $n corpus files mishandled"
echo "$name: ok"
