#!/usr/bin/env bash
# Issue 9: the SPRO training step against PyTorch. With one minibatch (train_subset =
# batch_size = 128), one epoch, 2 vertices, 1 sampled point and momentum 0, the only step
# starts with θ1 at the centroid of {θ0}, i.e. θ1 = θ0: the sampled point is θ0 whatever
# the Dirichlet weights, the volume gradient is 0 there, and the step must be
#     θ1 − θ0 = −lr · a1 · (∇ mean CE(θ0) + wd · θ0),   0 < a1 < 1.
# The direction is checked against a float64 PyTorch gradient of the mlp written out here,
# with a large wd so that the weight-decay term on the point is visible.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup simplex_step
C=(--set data.train_subset=128 --set data.test_subset=200 --set model.kind=mlp --set model.widths=32
   --set train.batch_size=128)
"$VALLEY" train "${C[@]}" --set train.epochs=2 --out "$dir/e" > "$dir/e.log" 2>&1 || { tail "$dir/e.log"; fail "train"; }
"$VALLEY" simplex "$dir/e/model.nc" "${C[@]}" --set simplex.vertices=2 --set simplex.samples=1 --set simplex.epochs=1 \
    --set simplex.lr=0.05 --set simplex.wd=0.1 --set train.momentum=0 --set simplex.eval_samples=1 --out "$dir/s" \
    > "$dir/s.log" 2>&1 || { tail "$dir/s.log"; fail "simplex"; }
"$PYTHON" - "$dir/s/simplex.nc" "$dir/e/model.nc" input/data/fashion-mnist.nc <<'PY' || fail "step differs from PyTorch"
import sys, numpy as np, torch
from netCDF4 import Dataset
s, m, data = (Dataset(p) for p in sys.argv[1:])
names = m.getncattr("valley.params").split(",")
assert names == ["fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"], names
V = np.asarray(s["vertices"][:], dtype=np.float64)
th0, th1 = V[0], V[1]
P = [torch.tensor(np.asarray(m[n][:], dtype=np.float64), requires_grad=True) for n in names]
x = np.asarray(data["train_x"][:128], dtype=np.float64).reshape(128, -1)
x = (x * data.pixel_scale - data.pixel_mean) / data.pixel_std
y = torch.tensor(np.asarray(data["train_y"][:128], dtype=np.int64))
h = torch.relu(torch.tensor(x) @ P[0].T + P[1])
loss = torch.nn.functional.cross_entropy(h @ P[2].T + P[3], y)
loss.backward()
g = np.concatenate([p.grad.numpy().ravel() for p in P])
v = -(g + 0.1 * th0)                       # the descent direction, weight decay on the point
d = th1 - th0
alpha = float(d @ v / (v @ v))             # = lr * a1
res = np.linalg.norm(d - alpha * v) / np.linalg.norm(d)
print(f"step |d| {np.linalg.norm(d):.4g}, lr*a1 {alpha:.4g}, residual {res:.2e}, CE {loss.item():.4f}")
assert 0 < alpha < 0.05, alpha
assert res < 2e-3, f"the step is not along -(grad CE + wd theta0): residual {res}"
# without the weight-decay term the direction would be off by far more than the tolerance
vg = -g
assert np.linalg.norm(d - float(d @ vg / (vg @ vg)) * vg) / np.linalg.norm(d) > 10 * res + 1e-2
PY
echo "simplex_step: ok"
