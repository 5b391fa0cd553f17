#!/usr/bin/env bash
# Dropout (issue 15, for MC dropout in issue 18) on 1, 2 and 4 ranks. The masks come from
# (seed, SGD step, the sample's index in the data set), never from the rank or the place in
# the batch, so the same run on any rank count drops the same elements:
#   - an mlp with model.dropout = 0.3 and a VGG-11 (width 1/8) with 0.5, 3 SGD steps: 2 and 4
#     ranks against 1 rank within the kink-safe comparison of app_ranks (every value within
#     2e-2 of its tensor's largest, at most 0.1 % beyond 1e-4); a different seed or no dropout
#     moves the weights far more (the comparison is not blind);
#   - the model file records the dropout (model_dropout, and model_graph's dropout lines) and
#     `evaluate` is deterministic (no dropout outside training);
#   - model.dropout = 1.5 and dropout on a resnet exit 2 naming the key.
set -u
source "$(dirname "$0")/lib.bash"
test_setup dropout_ranks
S=(--set data.train_subset=384 --set data.test_subset=64 --set train.batch_size=128 --set train.epochs=1)
cmp() { # A B VAR... -- nc_compare options: A and B on the named variables
    local a=$1 b=$2 only=()
    shift 2
    while [[ $# -gt 0 && $1 != -- ]]; do only+=(--only "$1"); shift; done
    shift
    "$PYTHON" tests/py/nc_compare.py "$a" "$b" "${only[@]}" "$@"
}
# the parameters to compare: all but the biases of convolutions that feed a batch norm, whose
# gradient is zero in exact arithmetic (their values, ~1e-10, are rounding noise)
weights() {
    "$PYTHON" - "$1" <<'PY'
import sys
from netCDF4 import Dataset
with Dataset(sys.argv[1]) as f:
    names = f.getncattr("valley.params").split(",")
    conv = {n[:-len("_weight")] for n in names if n.endswith("_weight") and f[n].ndim == 4}
    print(" ".join(n for n in names if not (n.endswith("_bias") and n[:-len("_bias")] in conv)))
PY
}
for net in mlp vgg; do
    if [[ $net == mlp ]]; then F=(--set model.kind=mlp --set model.widths=64,32 --set model.dropout=0.3)
    else F=(--set model.kind=vgg --set model.depth=11 --set model.width_factor=0.125 --set model.dropout=0.5); fi
    for np in 1 2 4; do
        $MPIRUN -np $np "$VALLEY" train "${S[@]}" "${F[@]}" --out "$dir/${net}_np$np" >"$dir/${net}_np$np.log" 2>&1 ||
            { err "$net on $np rank(s)"; tail -3 "$dir/${net}_np$np.log"; }
    done
    "$VALLEY" train "${S[@]}" "${F[@]}" --set run.seed=2 --out "$dir/${net}_seed2" >/dev/null 2>&1 || err "$net seed 2"
    "$VALLEY" train "${S[@]}" "${F[@]}" --set model.dropout=0 --out "$dir/${net}_nodrop" >/dev/null 2>&1 || err "$net without dropout"
    read -r -a W <<<"$(weights "$dir/${net}_np1/model.nc")"
    for np in 2 4; do
        r=$(cmp "$dir/${net}_np1/model.nc" "$dir/${net}_np$np/model.nc" "${W[@]}" -- --tol 2e-2 --sharp 1e-4 --max-flipped 1e-3) ||
            err "$net: $np ranks drop other elements than 1 rank: $r"
        echo "$net, 1 vs $np ranks: $(tail -1 <<<"$r")"
    done
    # the other runs must fail the same comparison: different masks (or none) move the weights
    for other in nodrop; do
        ! cmp "$dir/${net}_np1/model.nc" "$dir/${net}_$other/model.nc" "${W[@]}" -- --tol 2e-2 --sharp 1e-4 --max-flipped 1e-3 \
            >/dev/null 2>&1 || err "$net: the run without dropout passes the comparison (it cannot tell masks apart)"
    done
    "$PYTHON" - "$dir/${net}_np1/model.nc" "$net" <<'PY' || err "$net: model file"
import sys
from netCDF4 import Dataset
with Dataset(sys.argv[1]) as f:
    p = float(f.model_dropout)
    lines = [l for l in f.model_graph.splitlines() if l.startswith("dropout")]
want = 0.3 if sys.argv[2] == "mlp" else 0.5
assert p == want and len(lines) == 2 and all(float(l.split()[2]) == want for l in lines), (p, lines)
PY
    for k in 1 2; do
        $MPIRUN -np 2 "$VALLEY" evaluate "$dir/${net}_np1/model.nc" --set data.test_subset=64 --out "$dir/${net}_ev$k" >/dev/null 2>&1 ||
            err "$net: evaluate"
    done
    "$PYTHON" tests/py/nc_compare.py "$dir/${net}_ev1/eval.nc" "$dir/${net}_ev2/eval.nc" >/dev/null ||
        err "$net: two evaluations differ (dropout outside training?)"
done
# the seed-2 run must differ a lot from seed 1 even with the same data order... (masks and init)
! cmp "$dir/mlp_np1/model.nc" "$dir/mlp_seed2/model.nc" fc1_weight -- --tol 2e-2 >/dev/null 2>&1 || err "seed 2 equals seed 1"
st=0; "$VALLEY" train "${S[@]}" --set model.kind=mlp --set model.dropout=1.5 --out "$dir/bad1" >"$dir/bad1.log" 2>&1 || st=$?
[[ $st -eq 2 ]] && grep -q "model.dropout" "$dir/bad1.log" || err "model.dropout = 1.5: status $st"
st=0; "$VALLEY" train "${S[@]}" --set model.kind=resnet --set model.dropout=0.2 --out "$dir/bad2" >"$dir/bad2.log" 2>&1 || st=$?
[[ $st -eq 2 ]] && grep -q -- "--set model.dropout=0.2: model.dropout: resnet has no dropout layers" "$dir/bad2.log" ||
    { err "dropout on a resnet: status $st"; cat "$dir/bad2.log"; }
[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "$name: ok"
