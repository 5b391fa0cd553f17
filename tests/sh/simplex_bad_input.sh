#!/usr/bin/env bash
# Issue 9: `valley simplex` refuses bad input before computing anything: exit status 2, one
# clear message, no simplex.nc (on 1 rank and on 2 ranks alike).
set -eu
source "$(dirname "$0")/lib.bash"
test_setup simplex_bad_input
C=(--set data.train_subset=500 --set data.test_subset=200 --set model.kind=mlp)
"$VALLEY" train "${C[@]}" --set model.widths=16 --set train.epochs=1 --out "$dir/a" > "$dir/a.log" 2>&1 || fail "train a"
"$VALLEY" train "${C[@]}" --set model.widths=8 --set train.epochs=1 --out "$dir/b" > "$dir/b.log" 2>&1 || fail "train b"
n=0
expect2() { # message-regex, arguments of valley...
    local want=$1; shift
    n=$((n + 1))
    local out="$dir/o$n" status=0
    "$@" --out "$out" > "$dir/case$n.log" 2>&1 || status=$?
    [[ $status -eq 2 ]] || { cat "$dir/case$n.log" | tail -5; fail "case $n ($*): exit status $status, want 2"; }
    grep -Eq "$want" "$dir/case$n.log" || { cat "$dir/case$n.log"; fail "case $n: no message matching '$want'"; }
    [[ ! -e $out/simplex.nc ]] || fail "case $n: simplex.nc written"
}
W=(--set model.widths=16)
expect2 "give MODEL.nc" "$VALLEY" simplex "${C[@]}"
expect2 "nope.nc.*(No such file|not)" "$VALLEY" simplex "$dir/nope.nc" "${C[@]}"
expect2 "a different model or dataset" "$VALLEY" simplex "$dir/a/model.nc" "$dir/b/model.nc" "${C[@]}"
expect2 "simplex.grid: the plane grid needs 3-vertex" "$VALLEY" simplex "$dir/a/model.nc" "${C[@]}" --set simplex.vertices=4 \
    --set simplex.grid=5
expect2 "simplex.grid: 1 point" "$VALLEY" simplex "$dir/a/model.nc" "${C[@]}" --set simplex.grid=1
expect2 "simplex.samples.*out of range" "$VALLEY" simplex "$dir/a/model.nc" "${C[@]}" --set simplex.samples=0
expect2 "needs at least one connector" "$VALLEY" simplex "$dir/a/model.nc" "$dir/a/model.nc" "${C[@]}" --set simplex.vertices=1
expect2 "at most 64 vertices" "$VALLEY" simplex "$dir/a/model.nc" "$dir/a/model.nc" "${C[@]}" --set simplex.vertices=64
# the same refusal on 2 ranks (collective: no abort, no hang)
expect2 "a different model or dataset" $MPIRUN -np 2 "$VALLEY" simplex "$dir/a/model.nc" "$dir/b/model.nc" "${C[@]}"
expect2 "nope.nc" $MPIRUN -np 2 "$VALLEY" simplex "$dir/nope.nc" "${C[@]}" --set parallel.group_size=1
echo "simplex_bad_input: ok ($n cases)"
