#!/usr/bin/env bash
# Issue 8: `valley infer` refuses bad inputs with a clear message and exit status 2 (3 for a
# non-finite likelihood), and leaves nothing under the final name infer.nc.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup infer_bad_input
[[ -f input/data/toy1d.nc ]] || "$VALLEY" prepare toy1d > "$dir/prepare.log" 2>&1 || { cat "$dir/prepare.log"; fail "prepare toy1d"; }
common=(--set data.dataset=toy1d --set model.kind=mlp --set model.widths=8 --set train.batch_size=20)
"$VALLEY" train "${common[@]}" --set train.epochs=6 --set train.swag=true --set train.swa_start=2 --set train.swa_freq=2 \
    --set train.lr=0.01 --set train.swag_rank=6 --out "$dir/train" > "$dir/train.log" 2>&1 || { tail "$dir/train.log"; fail "train"; }
"$VALLEY" pca "${common[@]}" --set pca.rank=3 "$dir/train/swag.nc" --out "$dir/pca" > "$dir/pca.log" 2>&1 || { tail "$dir/pca.log"; fail "pca"; }
small=(--set infer.samples=2 --set infer.burnin=1 --set infer.grid_points=10)
# expect STATUS PATTERN ARGS...: runs infer, checks the exit status, the message and that no infer.nc exists
expect() {
    local want=$1 pattern=$2; shift 2
    local out="$dir/out_$RANDOM" rc=0
    "$VALLEY" infer "$@" "${small[@]}" --out "$out" > "$dir/case.log" 2>&1 || rc=$?
    [[ $rc -eq $want ]] || { cat "$dir/case.log"; err "infer $*: exit $rc, want $want"; return; }
    grep -q -- "$pattern" "$dir/case.log" || { cat "$dir/case.log"; err "infer $*: message lacks '$pattern'"; return; }
    [[ ! -e $out/infer.nc ]] || err "infer $*: infer.nc written on failure"
    ls "$out" 2>/dev/null | grep -q tmp && err "infer $*: a temporary file was left behind"
    echo "ok ($rc): $(grep -m1 valley: "$dir/case.log")"
}
expect 2 "give subspace.nc"
expect 2 "not a subspace" "$dir/train/model.nc"
expect 2 "No such file" "$dir/missing.nc"
expect 2 "infer.rank asks for 4" "$dir/pca/subspace.nc" --set infer.rank=4
expect 2 "does not go with" "$dir/pca/subspace.nc" --set infer.subspace=curve
expect 2 "is not an input of infer" "$dir/pca/subspace.nc" "$dir/train/history.nc"
expect 2 "SWAG deviations stored" "$dir/train/swag.nc" --set infer.rank=7
# a NaN in the basis makes the likelihood at z = 0 NaN: numerical failure, exit 3
cp "$dir/pca/subspace.nc" "$dir/nan.nc"
"$PYTHON" -c "
from netCDF4 import Dataset
d = Dataset('$dir/nan.nc', 'a'); b = d['basis']; b[0, 0] = float('nan'); d.close()" || fail "could not write the NaN file"
expect 3 "not finite" "$dir/nan.nc" --set infer.rank=3
# the good input works (so the failures above are about the inputs)
"$VALLEY" infer "$dir/pca/subspace.nc" "${common[@]}" "${small[@]}" --set infer.rank=3 --out "$dir/good" > "$dir/good.log" 2>&1 \
    || { tail "$dir/good.log"; fail "infer on a good subspace.nc"; }
[[ -f $dir/good/infer.nc ]] || fail "no infer.nc from the good input"
# swag.nc alone: PCA (Gram route) and random subspaces built inside infer
for kind in pca random; do
    "$VALLEY" infer "$dir/train/swag.nc" "${common[@]}" "${small[@]}" --set infer.rank=3 --set infer.subspace=$kind \
        --out "$dir/swag_$kind" > "$dir/swag_$kind.log" 2>&1 || { tail "$dir/swag_$kind.log"; fail "infer swag.nc ($kind)"; }
done
"$PYTHON" - "$dir/swag_pca/infer.nc" "$dir/swag_random/infer.nc" <<'PY' || fail "swag.nc subspaces"
import sys
from netCDF4 import Dataset
a, b = Dataset(sys.argv[1]), Dataset(sys.argv[2])
assert a.subspace_kind == "pca" and b.subspace_kind == "random", (a.subspace_kind, b.subspace_kind)
assert list(a["method_name"][:])[0] == "pca-ess" and list(b["method_name"][:])[0] == "random-ess"
PY
[[ $errors -eq 0 ]] || fail "$errors case(s) failed"
echo "infer_bad_input: ok"
