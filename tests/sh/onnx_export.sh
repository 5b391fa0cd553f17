#!/usr/bin/env bash
# Issue 16: models out again. For a trained model of every family (resnet with and without
# shortcuts, preresnet, vgg, wideresnet, convnet, mlp; small, one epoch):
#   - `valley export` writes model.onnx that passes python3-onnx's checker (full check, with
#     shape inference);
#   - a numpy evaluation of that graph (tests/py/onnx_numpy.py, float64) and the Python module
#     (python/valley: model.nc into a torch.nn.Module) give valley's `evaluate` logits on 64 test
#     images within 1e-4 (relative to the largest logit, at least 1);
#   - `valley import` of the exported file gives the same logits again, and the file's
#     model_graph alone (model_kind set to graph) rebuilds the same network bit for bit;
# and for an SWA mean (swag.nc), a SWAG sample (export.sample = 0) and a curve point (curve.nc,
# curve.t = 0.25), the last two exported on 1 and 2 ranks: the checker, the numpy evaluation against
# the re-imported model, the SWA mean's weights against swag.nc, the sample's test NLL against
# `valley bma` with that one sample, and the curve point's weights against w(t) computed here from
# the control points.
set -u
source "$(dirname "$0")/lib.bash"
test_setup onnx_export
S=(--set data.train_subset=384 --set data.test_subset=64 --set train.batch_size=64 --set train.epochs=1)
declare -A fam=(
    [resnet8]="--set model.kind=resnet --set model.depth=8 --set model.width_factor=0.5"
    [resnet8noshort]="--set model.kind=resnet --set model.depth=8 --set model.width_factor=0.5 --set model.shortcuts=false"
    [preresnet8]="--set model.kind=preresnet --set model.depth=8 --set model.width_factor=0.5"
    [vgg11]="--set model.kind=vgg --set model.depth=11 --set model.width_factor=0.125"
    [wrn10]="--set model.kind=wideresnet --set model.depth=10 --set model.widen=1 --set model.width_factor=0.5"
    [convnet]="--set model.kind=convnet"
    [mlp]="--set model.kind=mlp --set model.widths=32,16"
)
check() { # NAME MODEL.nc ONNX EVAL.nc: checker, numpy and torch against valley's logits
    "$PYTHON" - "$@" <<'PY'
import sys
import numpy as np
import onnx
import torch
from netCDF4 import Dataset
sys.path[:0] = ["python", "tests/py"]
import onnx_numpy
import valley
name, model, path, ev = sys.argv[1:5]
onnx.checker.check_model(onnx.load(path), full_check=True)
x = valley.test_images("input/data/fashion-mnist.nc", 64)
with Dataset(ev) as f:
    ref = np.asarray(f["logits"][0], dtype=np.float64)
scale = max(1.0, np.abs(ref).max())
e_np = np.abs(onnx_numpy.run(path, x.numpy()) - ref).max() / scale
with torch.no_grad():
    e_pt = np.abs(valley.load_model(model)(x).numpy() - ref).max() / scale
print(f"{name}: checker ok; numpy ONNX {e_np:.1e}, python/valley torch {e_pt:.1e}")
sys.exit(0 if e_np <= 1e-4 and e_pt <= 1e-4 else 1)
PY
}
logits() { # MODEL.nc OUT [ranks]
    $MPIRUN -np "${3:-1}" "$VALLEY" evaluate "$1" --set data.test_subset=64 --set eval.logits=true --out "$2" >"$2.log" 2>&1
}
for n in "${!fam[@]}"; do
    read -r -a F <<<"${fam[$n]}"
    "$VALLEY" train "${S[@]}" "${F[@]}" --out "$dir/$n" >"$dir/$n.train.log" 2>&1 || { err "$n: train"; continue; }
    logits "$dir/$n/model.nc" "$dir/$n/ev" || { err "$n: evaluate"; continue; }
    "$VALLEY" export "$dir/$n/model.nc" --out "$dir/$n/onnx" >"$dir/$n.export.log" 2>&1 ||
        { err "$n: export failed"; tail -3 "$dir/$n.export.log"; continue; }
    r=$(check "$n" "$dir/$n/model.nc" "$dir/$n/onnx/model.onnx" "$dir/$n/ev/eval.nc") || err "$n: $r"
    echo "$r"
    # round trip: the exported file imported again
    "$VALLEY" import "$dir/$n/onnx/model.onnx" --out "$dir/$n/back" >"$dir/$n.import.log" 2>&1 || { err "$n: re-import"; continue; }
    logits "$dir/$n/back/model.nc" "$dir/$n/evback" 2 || { err "$n: evaluate of the re-imported model"; continue; }
    # the description alone: the same file with model_kind = graph
    cp "$dir/$n/model.nc" "$dir/$n/asgraph.nc"
    "$PYTHON" -c "import netCDF4,sys; f=netCDF4.Dataset(sys.argv[1],'a'); f.model_kind='graph'; f.close()" "$dir/$n/asgraph.nc"
    logits "$dir/$n/asgraph.nc" "$dir/$n/evgraph" || { err "$n: evaluate of model_graph"; continue; }
    "$PYTHON" - "$dir/$n/ev/eval.nc" "$dir/$n/evback/eval.nc" "$dir/$n/evgraph/eval.nc" "$n" <<'PY' || err "$n: round trip"
import sys
import numpy as np
from netCDF4 import Dataset
sys.path.insert(0, "python")
import valley
a, b, c = (valley.var(p, "logits")[0].astype(np.float64) for p in sys.argv[1:4])
e = np.abs(a - b).max() / max(1.0, np.abs(a).max())
print(f"{sys.argv[4]}: re-imported {e:.1e}, model_graph alone bit-identical: {np.array_equal(a, c)}")
sys.exit(0 if e <= 1e-4 and np.array_equal(a, c) else 1)
PY
done

# an SWA mean and a curve point
C=(--set data.train_subset=384 --set data.test_subset=64 --set train.batch_size=64 --set model.kind=preresnet
   --set model.width_factor=0.5)
"$VALLEY" train "${C[@]}" --set train.epochs=2 --set train.swag=true --set train.swa_start=1 --set train.swa_freq=2 \
    --set train.swag_rank=4 --out "$dir/swa" >/dev/null 2>&1 ||
    fail "swa training"
"$VALLEY" train "${C[@]}" --set train.epochs=1 --set run.seed=2 --out "$dir/b" >/dev/null 2>&1 || fail "second endpoint"
"$VALLEY" curve "$dir/swa/model.nc" "$dir/b/model.nc" "${C[@]}" --set curve.epochs=1 --set curve.points=3 --out "$dir/curve" \
    >/dev/null 2>&1 || fail "curve"
"$VALLEY" export "$dir/swa/swag.nc" --out "$dir/swa/onnx" >"$dir/swaexp.log" 2>&1 || err "export of swag.nc"
# SWAG sample 0, as `valley bma` draws it: its test NLL after the BN refresh is bma's with that one sample
for np in 1 2; do
    $MPIRUN -np $np "$VALLEY" export "$dir/swa/swag.nc" "${C[@]}" --set export.sample=0 --out "$dir/swa/sample_np$np" \
        >"$dir/sampleexp$np.log" 2>&1 || { err "export of a SWAG sample on $np rank(s)"; tail -3 "$dir/sampleexp$np.log"; }
done
"$VALLEY" bma "$dir/swa/swag.nc" "${C[@]}" --set bma.methods=swag --set bma.samples=1 --out "$dir/swa/bma1" >/dev/null 2>&1 ||
    err "bma of swag.nc"
for np in 1 2; do
    $MPIRUN -np $np "$VALLEY" export "$dir/curve/curve.nc" "${C[@]}" --set curve.t=0.25 --out "$dir/curve/onnx$np" \
        >"$dir/curveexp$np.log" 2>&1 || { err "export of a curve point on $np rank(s)"; tail -3 "$dir/curveexp$np.log"; }
done
for f in swa/onnx swa/sample_np1 swa/sample_np2 curve/onnx1 curve/onnx2; do
    "$VALLEY" import "$dir/$f/model.onnx" --out "$dir/$f/back" >/dev/null 2>&1 || { err "re-import of $f"; continue; }
    logits "$dir/$f/back/model.nc" "$dir/$f/ev" || err "evaluate of $f"
done
"$PYTHON" - "$dir" <<'PY' || err "SWA mean / curve point"
import sys
import numpy as np
import onnx
from netCDF4 import Dataset
from onnx import numpy_helper
sys.path[:0] = ["python", "tests/py"]
import onnx_numpy
import valley
d = sys.argv[1]
x = valley.test_images("input/data/fashion-mnist.nc", 64).numpy()
ok = True
for f in ("swa/onnx", "swa/sample_np1", "swa/sample_np2", "curve/onnx1", "curve/onnx2"):
    onnx.checker.check_model(onnx.load(f"{d}/{f}/model.onnx"), full_check=True)
    ref = valley.var(f"{d}/{f}/ev/eval.nc", "logits")[0].astype(np.float64)
    e = np.abs(onnx_numpy.run(f"{d}/{f}/model.onnx", x) - ref).max() / max(1.0, np.abs(ref).max())
    print(f"{f}: checker ok, numpy vs re-imported {e:.1e}")
    ok &= e <= 1e-4
# the SWA mean's weights are swag.nc's; the curve point's are w(0.25) of the Bezier control points
def weights(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
s = Dataset(f"{d}/swa/swag.nc")
for k, v in weights(f"{d}/swa/onnx/model.onnx").items():
    ok &= np.array_equal(v, np.asarray(s[k.replace(".", "_")][:]))
cv = Dataset(f"{d}/curve/curve.nc")
theta = np.asarray(cv["control_points"][:], dtype=np.float64)
t = 0.25
w = (1 - t) ** 2 * theta[0] + 2 * t * (1 - t) * theta[1] + t ** 2 * theta[2]
names = cv.getncattr("valley.params").split(",")
m0 = Dataset(f"{d}/swa/model.nc")
off, W1, W2 = 0, weights(f"{d}/curve/onnx1/model.onnx"), weights(f"{d}/curve/onnx2/model.onnx")
for name in names:
    n = int(np.prod(m0[name].shape))
    key = name[::-1].replace("_", ".", 1)[::-1] if not name.endswith(("_running_mean", "_running_var")) else None
    got = W1[key].ravel().astype(np.float64)
    ok &= np.abs(got - w[off:off + n]).max() <= 1e-6 * max(1.0, np.abs(w[off:off + n]).max())
    ok &= np.array_equal(W1[key], W2[key])  # weights: the same on 1 and 2 ranks
    off += n
# BN statistics: refreshed on 1 and 2 ranks, equal up to summation order
for k in W1:
    if k.endswith(("running_mean", "running_var")):
        ok &= np.allclose(W1[k], W2[k], rtol=1e-4, atol=1e-5)
# the exported SWAG sample 0 against bma's only sample (the same draw, the same BN refresh)
b1 = float(valley.var(f"{d}/swa/bma1/bma.nc", "nll")[0])
for f in ("swa/sample_np1", "swa/sample_np2"):
    nll = float(valley.var(f"{d}/{f}/ev/eval.nc", "nll"))
    print(f"{f}: test NLL {nll:.6f}, bma's SWAG with this one sample {b1:.6f}")
    ok &= abs(nll - b1) <= 1e-4 * max(1.0, b1)
ok &= np.array_equal(weights(f"{d}/swa/sample_np1/model.onnx")["conv1.weight"], weights(f"{d}/swa/sample_np2/model.onnx")["conv1.weight"])
print("SWA mean weights = swag.nc; curve point weights = w(0.25) from the control points (1 and 2 ranks)" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
PY
# a model file needs no data to be exported (only a curve point or a SWAG sample, for their BN refresh)
"$VALLEY" export "$dir/mlp/model.nc" --set data.path="$dir/no_such_data.nc" --out "$dir/nodata" >"$dir/nodata.log" 2>&1 &&
    cmp -s "$dir/nodata/model.onnx" "$dir/mlp/onnx/model.onnx" || err "export of a model without its data set, or a different file"
# bad input: not a model file, two files
st=0; "$VALLEY" export "$dir/mlp/ev/eval.nc" --out "$dir/bad1" >"$dir/bad1.log" 2>&1 || st=$?
[[ $st -eq 2 ]] && grep -q "not a model" "$dir/bad1.log" || err "export of eval.nc: status $st"
st=0; "$VALLEY" export "$dir/mlp/model.nc" "$dir/vgg11/model.nc" --out "$dir/bad2" >"$dir/bad2.log" 2>&1 || st=$?
[[ $st -eq 2 ]] || err "export of two files: status $st"
[[ ! -e $dir/bad1/model.onnx && ! -e $dir/bad2/model.onnx ]] || err "a model.onnx was written for bad input"
[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "$name: ok"
