#!/usr/bin/env bash
# Issue 16: models in from PyTorch. PyTorch (tests/py/onnx_models.py, the networks of
# tests/py/torch_ref.py) builds ResNet-20, ResNet-56 (width 1/4), a no-shortcut ResNet-8, PreResNet-20 (half width),
# VGG-16 (width 1/4), the convnet and an mlp with random weights and random BN statistics and
# exports each to ONNX as a user would (eval mode, BN kept, symbolic batch size);
#   - `valley import` maps each onto valley's layers and `valley evaluate --set eval.logits=true`
#     gives PyTorch's logits on 64 test images within 1e-4 (relative to the logits' largest
#     magnitude, at least 1), on 1 and 2 ranks (ResNet-20 also on 4);
#   - every command takes an imported model: evaluate with a BN refresh, train from it
#     (train.init) collecting SWAG, bma of that swag.nc, fge from it, a curve from it to the
#     trained run, a random plane around it (surface) -- on 2 ranks;
#   - the malformed files of tests/corpus/onnx (tests/fuzz/make_onnx_corpus.py) end with exit 2,
#     a message naming what is wrong (the node and its op where there is one) and no model.nc;
#   - model.kind = graph from a deck, and a model.nc whose model_graph is broken, exit 2.
set -u
source "$(dirname "$0")/lib.bash"
test_setup onnx_import
DATA=input/data/fashion-mnist.nc
nets=(resnet20 resnet56 resnet8noshort preresnet20 vgg16 convnet mlp)
"$PYTHON" tests/py/onnx_models.py "$dir" "$DATA" "${nets[@]}" >"$dir/export.log" 2>&1 ||
    { tail "$dir/export.log"; fail "PyTorch could not export the networks"; }
compare() { # NET EVAL.nc -> prints the error, fails when over the tolerance
    "$PYTHON" - "$dir/$1.logits.npy" "$2" <<'PY'
import sys
import numpy as np
from netCDF4 import Dataset
ref = np.load(sys.argv[1]).astype(np.float64)
with Dataset(sys.argv[2]) as f:
    got = np.asarray(f["logits"][0], dtype=np.float64)
assert got.shape == ref.shape, (got.shape, ref.shape)
err = np.abs(got - ref).max() / max(1.0, np.abs(ref).max())
print(f"max |valley - PyTorch| / max(1, |logits|) = {err:.2e}")
sys.exit(0 if err <= 1e-4 else 1)
PY
}
for net in "${nets[@]}"; do
    "$VALLEY" import "$dir/$net.onnx" --out "$dir/$net" >"$dir/$net.import.log" 2>&1 ||
        { err "$net: import failed"; tail -3 "$dir/$net.import.log"; continue; }
    "$PYTHON" -c "import netCDF4,sys; f=netCDF4.Dataset(sys.argv[1]); assert f.model_kind=='graph', f.model_kind" \
        "$dir/$net/model.nc" || err "$net: model.nc is not of model.kind graph"
    ranks=(1 2)
    [[ $net == resnet20 ]] && ranks=(1 2 4)
    for np in "${ranks[@]}"; do
        $MPIRUN -np "$np" "$VALLEY" evaluate "$dir/$net/model.nc" --set data.test_subset=64 --set eval.logits=true \
            --out "$dir/$net/eval$np" >"$dir/$net.eval$np.log" 2>&1 || { err "$net: evaluate on $np rank(s) failed"; continue; }
        r=$(compare "$net" "$dir/$net/eval$np/eval.nc") || err "$net, $np rank(s): $r"
        echo "$net, $np rank(s): $r"
    done
done

# every command takes an imported model (PreResNet-20: batch norm, residual adds)
M=$dir/preresnet20/model.nc
S=(--set data.train_subset=512 --set data.test_subset=128 --set train.batch_size=64)
run() { # LABEL args...
    local label=$1
    shift
    $MPIRUN -np 2 "$VALLEY" "$@" >"$dir/cmd_$label.log" 2>&1 || { err "$label on an imported model failed"; tail -3 "$dir/cmd_$label.log"; }
}
run evaluate evaluate "$M" "${S[@]}" --set eval.bn_refresh=true --out "$dir/c/eval"
run train train "${S[@]}" --set train.init="$M" --set train.epochs=2 --set train.swag=true --set train.swa_start=1 \
    --set train.swag_rank=4 --out "$dir/c/swag"
grep -q "starting from $M (train.init)" "$dir/cmd_train.log" || err "train does not say it starts from the imported model"
run bma bma "$dir/c/swag/swag.nc" "${S[@]}" --set bma.samples=2 --out "$dir/c/bma"
run fge fge "$M" "${S[@]}" --set fge.cycle=2 --set fge.cycles=1 --out "$dir/c/fge"
run curve curve "$M" "$dir/c/swag/model.nc" "${S[@]}" --set curve.epochs=1 --set curve.points=3 --out "$dir/c/curve"
run surface surface "$M" "${S[@]}" --set surface.basis=random --set surface.nx=3 --set surface.ny=3 \
    --set parallel.group_size=1 --out "$dir/c/plane"
for f in eval/eval.nc swag/swag.nc bma/bma.nc fge/fge.nc curve/curve_eval.nc plane/surface.nc; do
    [[ -f $dir/c/$f ]] || err "no $f from the imported model"
done
"$PYTHON" -c "import netCDF4,sys; f=netCDF4.Dataset(sys.argv[1]); assert f.model_kind=='graph' and f.model_graph==netCDF4.Dataset(sys.argv[2]).model_graph" \
    "$dir/c/swag/swag.nc" "$M" || err "swag.nc of the imported network does not carry its graph"

# malformed ONNX: exit 2, the reason, no model.nc
declare -A want=(
    [not_protobuf]="not an ONNX model" [truncated]="not an ONNX model" [empty]="no graph in the model"
    [unsupported_op]="node 3 '/act' (Sigmoid): valley cannot run this operator"
    [grouped_conv]="(Conv): a grouped convolution" [dilated_conv]="(Conv): dilated convolution"
    [dynamic_shape]="input 'x': dimension 2 is dynamic" [missing_initializer]="input 'bn1.running_var' is neither"
    [huge_weight]="(Conv): the weight expects 1048576 input channels" [huge_tensor]="'fc.bias' claims a bad or huge shape"
    [short_data]="764 bytes of data for 192 floats" [nan_weight]="holds a NaN or an infinity"
    [double_weight]="is of ONNX type 11, valley reads float" [bn_eps]="(BatchNormalization): epsilon 0.001"
    [two_inputs]="several inputs" [output_plane]="is a plane, not (N, classes)"
    [forward_reference]="input 'b1' is neither an initializer nor an earlier node's output"
    [sequence_input]="input 'x' has no tensor shape"
)
n=0
for f in tests/corpus/onnx/*.onnx; do
    b=$(basename "$f" .onnx)
    [[ -n ${want[$b]:-} ]] || { err "tests/corpus/onnx/$b.onnx: no expected message in this test"; continue; }
    n=$((n + 1))
    st=0
    "$VALLEY" import "$f" --out "$dir/bad/$b" >"$dir/bad_$b.log" 2>&1 || st=$?
    [[ $st -eq 2 ]] || err "$b.onnx: exit status $st, want 2"
    grep -qF -- "${want[$b]}" "$dir/bad_$b.log" || { err "$b.onnx: the message lacks '${want[$b]}'"; grep valley: "$dir/bad_$b.log"; }
    [[ ! -e $dir/bad/$b/model.nc ]] || err "$b.onnx: a model.nc was written"
done
[[ $n -ge 18 ]] || err "only $n malformed files checked"
echo "$n malformed ONNX files refused"

st=0
"$VALLEY" train --set model.kind=graph --out "$dir/deckgraph" >"$dir/deckgraph.log" 2>&1 || st=$?
[[ $st -eq 2 ]] && grep -qF -- "--set model.kind=graph: model.kind: a graph network is built from its model.nc" "$dir/deckgraph.log" ||
    { err "model.kind = graph from the deck: status $st"; cat "$dir/deckgraph.log"; }
cp "$dir/mlp/model.nc" "$dir/broken.nc"
"$PYTHON" -c "import netCDF4,sys; f=netCDF4.Dataset(sys.argv[1],'a'); f.model_graph='input dense\nlinear fc1 0 64\nrelu 5\n'; f.close()" "$dir/broken.nc"
st=0
"$VALLEY" evaluate "$dir/broken.nc" --set data.test_subset=64 --out "$dir/broken" >"$dir/broken.log" 2>&1 || st=$?
[[ $st -eq 2 ]] && grep -q "model_graph line 3: relu: a reference not before this line" "$dir/broken.log" ||
    { err "a broken model_graph: status $st"; cat "$dir/broken.log"; }

[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "$name: ok"
