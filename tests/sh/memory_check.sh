#!/usr/bin/env bash
# Memory (issue 15): a network or a SWAG that does not fit the node fails before anything
# is allocated, with exit status 4 and a message that says what fits; what fits runs.
#   A. WideResNet-28-10 (36.5M parameters) with train.swag_rank = 10000 (1.36 TB of
#      deviations): exit 4 within seconds, "train.swag_rank <= K", no model.nc.
#   B. WideResNet-28-10 at batch 128 on a node stated to have 1 GiB (VALLEY_MEM_AVAILABLE):
#      exit 4 naming the network and the batch, no model.nc.
#   C. The advice is exact: on a stated node, the convnet's SWAG with the K the message
#      of a too-large rank advises trains (exit 0), and K + 1 is refused (exit 4).
#   D. 2 ranks on one node share it: a rank that fits alone is refused when two ranks
#      each need it (OMPI_COMM_WORLD_LOCAL_SIZE), on every rank (exit 4 from mpirun).
set -u
source "$(dirname "$0")/lib.bash"
test_setup memory_check
small=(--set data.train_subset=128 --set data.test_subset=64 --set train.epochs=1 --set train.batch_size=64)

# A
t0=$SECONDS
"$VALLEY" train --set model.kind=wideresnet --set train.swag=true --set train.swag_rank=10000 "${small[@]}" \
    --out "$dir/A" >"$dir/A.log" 2>&1
st=$?
echo "A: exit $st after $((SECONDS - t0)) s: $(grep -o 'needs about.*' "$dir/A.log" | cut -c1-150)"
[[ $st -eq 4 ]] || { tail -5 "$dir/A.log"; err "A: exit status $st, want 4"; }
grep -q 'train.swag_rank <= [0-9]' "$dir/A.log" || err "A: no 'train.swag_rank <= K' advice"
grep -q 'wideresnet28-10' "$dir/A.log" || err "A: the message does not name the network"
[[ ! -e $dir/A/model.nc && ! -e $dir/A/swag.nc ]] || err "A: a result file was written"
[[ $((SECONDS - t0)) -le 60 ]] || err "A: took $((SECONDS - t0)) s to refuse"

# B
VALLEY_MEM_AVAILABLE=1G "$VALLEY" train --set model.kind=wideresnet --set train.batch_size=128 \
    --set data.train_subset=128 --set data.test_subset=64 --out "$dir/B" >"$dir/B.log" 2>&1
st=$?
echo "B: exit $st: $(grep -o 'needs about.*' "$dir/B.log" | cut -c1-120)"
[[ $st -eq 4 ]] || { tail -5 "$dir/B.log"; err "B: exit status $st, want 4"; }
grep -q 'wideresnet28-10.*at batch 128 needs about' "$dir/B.log" || err "B: the message does not name the network and batch"
grep -q 'VALLEY_MEM_AVAILABLE' "$dir/B.log" || err "B: the message does not say where the memory figure came from"
[[ ! -e $dir/B/model.nc ]] || err "B: model.nc written"

# C
mem=150M
VALLEY_MEM_AVAILABLE=$mem "$VALLEY" train --set model.kind=convnet --set train.swag=true --set train.swag_rank=10000 \
    "${small[@]}" --out "$dir/C0" >"$dir/C0.log" 2>&1
st=$?
K=$(grep -o 'train.swag_rank <= [0-9]*' "$dir/C0.log" | grep -o '[0-9]*$')
echo "C: at $mem the convnet's advice is K = ${K:-?} (exit $st)"
[[ $st -eq 4 && -n $K ]] || { tail -5 "$dir/C0.log"; fail "C: no advice from a too-large rank (exit $st)"; }
[[ $K -ge 2 ]] || fail "C: K = $K: choose a larger stated memory for this test"
VALLEY_MEM_AVAILABLE=$mem "$VALLEY" train --set model.kind=convnet --set train.swag=true --set train.swag_rank=$K \
    --set train.swa_start=1 "${small[@]}" --out "$dir/C1" >"$dir/C1.log" 2>&1 ||
    { tail -5 "$dir/C1.log"; err "C: train.swag_rank = $K (the advice) was refused or failed"; }
[[ -f $dir/C1/swag.nc ]] || err "C: no swag.nc with the advised rank"
VALLEY_MEM_AVAILABLE=$mem "$VALLEY" train --set model.kind=convnet --set train.swag=true --set train.swag_rank=$((K + 1)) \
    "${small[@]}" --out "$dir/C2" >"$dir/C2.log" 2>&1
st=$?
[[ $st -eq 4 ]] || err "C: train.swag_rank = $((K + 1)) (one more than advised): exit $st, want 4"

# D: the per-rank need of the convnet alone, from B's kind of message at a tiny stated size
VALLEY_MEM_AVAILABLE=1K "$VALLEY" train --set model.kind=convnet "${small[@]}" --out "$dir/D0" >"$dir/D0.log" 2>&1
need=$(grep -o 'needs about [0-9.]* GiB' "$dir/D0.log" | grep -o '[0-9.]*')
[[ -n $need ]] || { tail -3 "$dir/D0.log"; fail "D: no estimate at a 1 KiB node"; }
# a node with 1.5 times one rank's need: one rank runs, two ranks on it cannot
node=$("$PYTHON" -c "print(int($need * 1.5 * 2**30))")
VALLEY_MEM_AVAILABLE=$node "$VALLEY" train --set model.kind=convnet "${small[@]}" --out "$dir/D1" >"$dir/D1.log" 2>&1 ||
    { tail -3 "$dir/D1.log"; err "D: 1 rank on a node of $node bytes failed"; }
VALLEY_MEM_AVAILABLE=$node timeout 120 $MPIRUN -np 2 -x VALLEY_MEM_AVAILABLE "$VALLEY" train --set model.kind=convnet \
    "${small[@]}" --out "$dir/D2" >"$dir/D2.log" 2>&1
st=$?
echo "D: one rank needs $need GiB; on a node of $node bytes: 1 rank ok, 2 ranks exit $st"
[[ $st -ne 0 ]] || err "D: 2 ranks on a node that holds 1.5 ranks ran"
grep -q 'needs about' "$dir/D2.log" || { tail -3 "$dir/D2.log"; err "D: 2 ranks: no memory message"; }
[[ ! -e $dir/D2/model.nc ]] || err "D: model.nc written"

[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "memory_check: ok"
