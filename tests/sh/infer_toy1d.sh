#!/usr/bin/env bash
# Issue 8: `valley infer` end to end on the 1-D toy regression (mlp, input/infer_toy1d.ini
# on a small budget): prepare → train (SWAG) → pca → infer (ESS, with swag.nc and model.nc
# for comparison). Checked against NumPy, independently of valley's code: the network is
# rebuilt from subspace.nc (w = shift + basisᵀ z for every stored z) and
#   - every sample's tempered log-likelihood, −Σ_i NLL_i / T over the standardised
#     training data with the file's noise std, equals sample_loglik;
#   - the BMA over the x-grid (moment-matched Gaussian mixture in original units, noise
#     included) equals pred_mean / pred_std, and pred_std_model is the spread without noise.
# Then chains in 1 group (1 rank, infer.chains = 2) and in 2 groups (2 ranks,
# parallel.group_size = 1) must give a bit-identical infer.nc, and VI runs end to end.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup infer_toy1d
[[ -f input/data/toy1d.nc ]] || "$VALLEY" prepare toy1d > "$dir/prepare.log" 2>&1 || { cat "$dir/prepare.log"; fail "prepare toy1d"; }
deck=input/infer_toy1d.ini
small=(--set train.epochs=150 --set train.swa_start=100 --set infer.samples=20 --set infer.burnin=5 --set infer.grid_points=60)
"$VALLEY" train $deck "${small[@]}" --out "$dir/train" > "$dir/train.log" 2>&1 || { tail "$dir/train.log"; fail "train"; }
"$VALLEY" pca $deck "$dir/train/swag.nc" --out "$dir/pca" > "$dir/pca.log" 2>&1 || { tail "$dir/pca.log"; fail "pca"; }
"$VALLEY" infer $deck "$dir/pca/subspace.nc" "$dir/train/swag.nc" "$dir/train/model.nc" "${small[@]}" --set infer.chains=1 \
    --out "$dir/infer" > "$dir/infer.log" 2>&1 || { tail -20 "$dir/infer.log"; fail "infer"; }
grep -q "ess chain 0: iteration 25/25" "$dir/infer.log" || fail "no ESS progress line"
grep -q "ETA" "$dir/infer.log" || fail "no ETA in the progress lines"
"$PYTHON" - "$dir/infer/infer.nc" "$dir/pca/subspace.nc" input/data/toy1d.nc <<'PY' || fail "infer.nc against numpy"
import sys
import numpy as np
from netCDF4 import Dataset
inf, sub, data = (Dataset(p) for p in sys.argv[1:4])
z = np.asarray(inf["z"][:], float)
S, k = z.shape
assert (S, k) == (20, 5), (S, k)
assert list(inf["sample_chain"][:]) == [0] * 20
assert inf.subspace_kind == "pca" and inf.infer_method == "ess", (inf.subspace_kind, inf.infer_method)
names = list(inf["method_name"][:])
assert names == ["pca-ess", "swa", "swag", "sgd"], names
assert list(inf["n_samples"][:]) == [20, 1, 30, 1], list(inf["n_samples"][:])
for v in ("rmse", "loglik", "coverage95", "mean_std"):
    x = np.asarray(inf[v][:]); assert np.isfinite(x).all(), (v, x)
assert (np.asarray(inf["coverage95"][:]) > 0.3).all() and (np.asarray(inf["rmse"][:]) < 0.5).all()
ev = float(inf["chain_evaluations"][0]); sh = float(inf["chain_shrinkage"][0])
assert ev == 1 + 25 + sh, (ev, sh)   # one evaluation at z0, one accepted per iteration, one per shrinkage step
assert (np.asarray(inf["sample_shrinkage"][:]) >= 0).all()
# the network, rebuilt from subspace.nc
shift = np.asarray(sub["shift"][:], float); basis = np.asarray(sub["basis"][:k], float)
widths = [int(w) for w in np.atleast_1d(sub.model_widths)[: int(sub.model_nwidths)]]
dims = [1] + widths + [1]
def forward(w, x):
    o, h = 0, x
    for i in range(len(dims) - 1):
        W = w[o:o + dims[i + 1] * dims[i]].reshape(dims[i + 1], dims[i]); o += dims[i + 1] * dims[i]
        b = w[o:o + dims[i + 1]]; o += dims[i + 1]
        h = h @ W.T + b
        if i < len(dims) - 2:
            h = np.maximum(h, 0)
    assert o == len(w)
    return h[:, 0]
xm, xs = float(np.ravel(data.x_mean)[0]), float(np.ravel(data.x_std)[0])
ym, ys = float(np.ravel(data.y_mean)[0]), float(np.ravel(data.y_std)[0])
X = (np.asarray(data["train_x"][:], float) - xm) / xs
t = (np.asarray(data["train_y"][:], float).ravel() - ym) / ys
T, noise = float(inf.temperature), float(inf.noise_std)
nv = (noise / ys) ** 2
ll = np.array([-(0.5 * np.log(2 * np.pi * nv) + (forward(shift + zz @ basis, X) - t) ** 2 / (2 * nv)).sum() / T for zz in z])
err = np.abs(ll - np.asarray(inf["sample_loglik"][:])).max()
print("sample log-likelihoods: max |numpy - valley| =", err, "values", ll[:3])
assert err < 1e-3 * max(1.0, np.abs(ll).max()), err
# the noise std is the training RMSE of the shift (model.noise_std = 0)
rmse0 = np.sqrt(((forward(shift, X) - t) ** 2).mean()) * ys
assert abs(rmse0 - noise) < 1e-4 * noise, (rmse0, noise)
xg = np.asarray(inf["x_grid"][:], float)
F = np.array([forward(shift + zz @ basis, ((xg - xm) / xs)[:, None]) for zz in z])  # (S, G) standardised
mean = F.mean(0) * ys + ym
model_var = np.maximum((F ** 2).mean(0) - F.mean(0) ** 2, 0)
std = np.sqrt(nv + model_var) * ys
e1 = np.abs(mean - inf["pred_mean"][:]).max(); e2 = np.abs(std - inf["pred_std"][:]).max()
e3 = np.abs(np.sqrt(model_var) * ys - inf["pred_std_model"][:]).max()
print("grid BMA: max |numpy - valley| mean %.2e std %.2e model std %.2e" % (e1, e2, e3))
assert e1 < 1e-4 and e2 < 1e-4 and e3 < 1e-3, (e1, e2, e3)
assert xg.min() < -1.0 and xg.max() > 1.0, "the grid does not span the data"
assert len(inf["train_x"][:]) == 120
PY
# chains in 1 group vs 2 groups: identical samples and metrics
two=(infer $deck "$dir/pca/subspace.nc" "${small[@]}" --set infer.chains=2 --set infer.samples=6 --set infer.burnin=2)
$MPIRUN -np 1 "$VALLEY" "${two[@]}" --out "$dir/g1" > "$dir/g1.log" 2>&1 || { tail "$dir/g1.log"; fail "infer 1 group"; }
$MPIRUN -np 2 "$VALLEY" "${two[@]}" --set parallel.group_size=1 --out "$dir/g2" > "$dir/g2.log" 2>&1 || { tail "$dir/g2.log"; fail "infer 2 groups"; }
"$PYTHON" tests/py/nc_compare.py "$dir/g1/infer.nc" "$dir/g2/infer.nc" --exclude chain_seconds || fail "infer.nc differs between 1 and 2 groups"
"$PYTHON" - "$dir/g1/infer.nc" <<'PY' || fail "two chains"
import sys
import numpy as np
from netCDF4 import Dataset
d = Dataset(sys.argv[1])
z = np.asarray(d["z"][:]); c = list(d["sample_chain"][:])
assert z.shape == (12, 5) and c == [0] * 6 + [1] * 6, (z.shape, c)
assert not np.allclose(z[:6], z[6:]), "the two chains gave the same samples"
PY
# VI end to end
"$VALLEY" infer $deck "$dir/pca/subspace.nc" "${small[@]}" --set infer.method=vi --set infer.vi_epochs=5 --set infer.chains=1 \
    --out "$dir/vi" > "$dir/vi.log" 2>&1 || { tail "$dir/vi.log"; fail "infer vi"; }
"$PYTHON" - "$dir/vi/infer.nc" <<'PY' || fail "vi infer.nc"
import sys
import numpy as np
from netCDF4 import Dataset
d = Dataset(sys.argv[1])
assert d.infer_method == "vi" and list(d["method_name"][:])[0] == "pca-vi"
s = np.asarray(d["vi_sigma"][:]); o = np.asarray(d["vi_objective"][:])
assert s.shape == (1, 5) and (s > 0).all() and np.isfinite(o).all() and o.shape == (1, 5), (s, o)
z = np.asarray(d["z"][:]); mu = np.asarray(d["vi_mu"][0])
assert z.shape == (20, 5) and np.isfinite(z).all()
print("vi: mu", mu.round(3), "sigma", s[0].round(3), "objective per epoch", o[0].round(4))
# objective = mean per-example NLL (about -0.8 nats here: noise std ~0.1 of the target std) + T KL / N (< 0.2)
assert (-1.5 < o).all() and (o < 0.5).all(), ("objective is not a mean per example", o)
PY
echo "infer_toy1d: ok"
