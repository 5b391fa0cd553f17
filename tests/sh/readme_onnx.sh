#!/usr/bin/env bash
# Issue 16: the README's PyTorch walkthrough, run as written (in a scratch copy of the layout:
# bin/, python/, input/data): a CNN trained briefly in PyTorch and exported, then imported,
# evaluated, swept on a random plane and SWAG-sampled on 2 ranks, its SWA mean exported; every
# command must succeed, and the imported model's accuracy must equal PyTorch's on the same
# test images (the network, not just the file, came through).
set -u
source "$(dirname "$0")/lib.bash"
test_setup readme_onnx
sed -n '/<!-- pytorch walkthrough: python/,/<!-- pytorch walkthrough: shell/p' README.md | sed '1d;$d' | sed 's/^    //' >"$dir/walk.py"
sed -n '/<!-- pytorch walkthrough: shell/,/<!-- end of the pytorch walkthrough/p' README.md | sed '1d;$d' | sed 's/^    //' >"$dir/walk.sh"
[[ $(wc -l <"$dir/walk.py") -ge 8 && $(wc -l <"$dir/walk.sh") -ge 6 ]] || fail "no walkthrough found in README.md"
mkdir -p "$dir/w/bin" "$dir/w/input"
ln -s "$VALLEY" "$dir/w/bin/valley"
ln -s "$PWD/python" "$dir/w/python"
ln -s "$PWD/input/data" "$dir/w/input/data"
(cd "$dir/w" && "$PYTHON" ../walk.py) >"$dir/py.log" 2>&1 || { tail "$dir/py.log"; fail "the walkthrough's Python part"; }
[[ -s $dir/w/mynet.onnx ]] || fail "no mynet.onnx"
(cd "$dir/w" && bash -e -c "$(sed "s/^mpirun /$MPIRUN /" ../walk.sh)") >"$dir/sh.log" 2>&1 ||
    { tail -20 "$dir/sh.log"; fail "the walkthrough's commands"; }
for f in mynet/model.nc mynet/plane/surface.nc mynet/swag/swag.nc mynet/bma/bma.nc mynet/swa/model.onnx; do
    [[ -f $dir/w/output/$f ]] || fail "the walkthrough wrote no output/$f"
done
(cd "$dir/w" && "$PYTHON" - <<'PY') || fail "the imported network is not PyTorch's"
import sys, numpy as np, torch, onnx
sys.path.insert(0, "python"); import valley
from netCDF4 import Dataset
x = valley.test_images("input/data/fashion-mnist.nc")
y = valley.var("input/data/fashion-mnist.nc", "test_y")
with torch.no_grad():
    acc = (valley.load_model("output/mynet/model.nc")(x).argmax(1).numpy() == y).mean()
ev = float(valley.var("output/evaluate/eval.nc", "accuracy"))  # the README evaluates into the default --out
print(f"accuracy of the imported model: valley {ev:.4f}, PyTorch module from model.nc {acc:.4f}")
assert abs(ev - acc) < 1e-9
onnx.checker.check_model(onnx.load("output/mynet/swa/model.onnx"), full_check=True)
s = valley.open("output/mynet/plane/surface.nc")
assert s.train_loss.dims == ("y", "x") and s.train_loss.shape == (9, 9)
PY
echo "$name: ok"
