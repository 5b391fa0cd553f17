#!/usr/bin/env bash
# Issue 6: a model whose loss over a plane is known in closed form. Three linear models
# y = a x + b on the toy 1-D regression data (Gaussian NLL with unit noise variance in
# standardised units); over their plane the training loss is a quadratic in (x, y):
#   L(z) = mean_i [ 0.5 log(2 pi) + 0.5 (t_i - a(z) x_i - b(z))^2 ]
# with (a, b)(z) = w0 + z_1 (w2 - w0) + z_2 v, v = (w1 - w0) without its (w2 - w0) part.
# numpy evaluates it from the dataset file and the three model files alone; valley's
# surface.nc must agree to 1e-5 at every grid point (fp32 forward pass).
set -eu
source "$(dirname "$0")/lib.bash"
test_setup surface_closed_form
[[ -f input/data/toy1d.nc ]] || "$VALLEY" prepare toy1d > /dev/null 2>&1 || fail "prepare toy1d"
L=(--set data.dataset=toy1d --set model.kind=linear --set train.batch_size=16 --set train.lr=0.01)
for s in 1 2 3; do
    "$VALLEY" train "${L[@]}" --set train.epochs=$s --set run.seed=$s --out "$dir/m$s" > "$dir/m$s.log" 2>&1 \
        || { tail "$dir/m$s.log"; fail "train linear model $s"; }
done
$MPIRUN -np 2 "$VALLEY" surface "$dir/m1/model.nc" "$dir/m2/model.nc" "$dir/m3/model.nc" --set data.dataset=toy1d \
    --set surface.nx=9 --set surface.ny=7 --set parallel.group_size=1 --out "$dir/s" > "$dir/s.log" 2>&1 \
    || { tail "$dir/s.log"; fail "surface"; }
"$PYTHON" - "$dir" <<'PY' || fail "surface differs from the closed form"
import sys, numpy as np
from netCDF4 import Dataset
d = sys.argv[1]
data = Dataset("input/data/toy1d.nc")
x = (data["train_x"][:, 0].astype(np.float64) - data.x_mean) / data.x_std
t = (data["train_y"][:, 0].astype(np.float64) - data.y_mean) / data.y_std
W = [np.array([float(Dataset(f"{d}/m{s}/model.nc")[n][:].ravel()[0]) for n in ("fc1_weight", "fc1_bias")]) for s in (1, 2, 3)]
w0, w1, w2 = W
e = w2 - w0; f = w1 - w0; v = f - (e @ f) / (e @ e) * e
s = Dataset(f"{d}/s/surface.nc")
X, Y = s["x"][:], s["y"][:]
got = s["train_loss"][:]
worst = 0
for iy, yy in enumerate(Y):
    for ix, xx in enumerate(X):
        a, b = w0 + xx * e + yy * v
        want = np.mean(0.5 * np.log(2 * np.pi) + 0.5 * (t - a * x - b) ** 2)
        worst = max(worst, abs(got[iy, ix] - want) / abs(want))
assert worst < 1e-5, worst
print("closed form: worst relative difference", worst, "over", got.size, "points")
PY
echo "surface_closed_form: ok"
