#!/usr/bin/env bash
# End-to-end: `valley evaluate` of one model.nc and of an ensemble of two (seeds 1
# and 2), on 2 ranks, checked against an independent PyTorch computation that loads
# model.nc's tensors by name into torch.nn layers (this is the "a PyTorch user can
# load model.nc" contract of INTERFACE.md):
#   convnet = conv(1->32, 3, pad 1)+bias, BN, ReLU, maxpool 2, conv(32->64)+bias, BN,
#   ReLU, maxpool 2, flatten, fc1 3136->128, ReLU, fc2 128->10; BN eps 1e-5 in eval
#   mode (running statistics); inputs (pixel*pixel_scale - pixel_mean)/pixel_std with
#   the attributes of input/data/fashion-mnist.nc; the first N test images.
# PyTorch runs in float64; valley in float32. Checked: accuracy, NLL, Brier and ECE
# (15 equal-width bins, conf in (b/15, (b+1)/15]) of the single model, of every
# member (member_*) and of the ensemble (mean of the members' softmax) within 1e-4
# absolute; ece_count, entropy and the reliability bins for range and consistency.
set -u
source "$(dirname "$0")/lib.bash"
test_setup app_evaluate
NTEST=2000
run() { # LABEL valley-args...
    local label=$1 t0=$SECONDS
    shift
    timeout 120 $MPIRUN -np 2 "$VALLEY" "$@" --out "$dir/$label" >"$dir/$label.log" 2>&1 ||
        { tail -20 "$dir/$label.log"; fail "valley $1 ($label) failed"; }
    echo "$label: valley $1 in $((SECONDS - t0)) s"
}
for seed in 1 2; do
    run train$seed train --set model.kind=convnet --set run.seed=$seed --set data.train_subset=2048 \
        --set data.test_subset=200 --set train.epochs=1
done
run single evaluate "$dir/train1/model.nc" --set data.test_subset=$NTEST
run ensemble evaluate "$dir/train1/model.nc" "$dir/train2/model.nc" --set data.test_subset=$NTEST

"$PYTHON" - input/data/fashion-mnist.nc $NTEST "$dir/single/eval.nc" "$dir/ensemble/eval.nc" \
    "$dir/train1/model.nc" "$dir/train2/model.nc" <<'EOF'
import sys
import numpy as np
import netCDF4
import torch
from torch import nn

data, ntest, single_path, ens_path, *models = sys.argv[1:]
ntest = int(ntest)
torch.set_grad_enabled(False)
TOL = 1e-4
failures = []

with netCDF4.Dataset(data) as f:
    x = np.asarray(f["test_x"][:ntest], dtype=np.float64)
    y = np.asarray(f["test_y"][:ntest], dtype=np.int64)
    x = (x * f.pixel_scale - f.pixel_mean) / f.pixel_std
x = torch.from_numpy(x.reshape(ntest, 1, 28, 28))

def convnet():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32, eps=1e-5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64, eps=1e-5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10)).double()

# torch module key -> model.nc variable
NAMES = {"0.weight": "conv1_weight", "0.bias": "conv1_bias",
         "1.weight": "bn1_weight", "1.bias": "bn1_bias",
         "1.running_mean": "bn1_running_mean", "1.running_var": "bn1_running_var",
         "4.weight": "conv2_weight", "4.bias": "conv2_bias",
         "5.weight": "bn2_weight", "5.bias": "bn2_bias",
         "5.running_mean": "bn2_running_mean", "5.running_var": "bn2_running_var",
         "9.weight": "fc1_weight", "9.bias": "fc1_bias",
         "11.weight": "fc2_weight", "11.bias": "fc2_bias"}

def probabilities(path):
    net = convnet()
    sd = net.state_dict()
    with netCDF4.Dataset(path) as f:
        assert f.getncattr("model_kind") == "convnet", f"{path}: model_kind {f.getncattr('model_kind')}"
        params = f.getncattr("valley.params").split(",")
        assert set(params) <= set(NAMES.values()), f"{path}: unexpected tensors {set(params) - set(NAMES.values())}"
        for key, var in NAMES.items():
            if key.endswith("num_batches_tracked"):
                continue
            t = torch.from_numpy(np.asarray(f[var][:], dtype=np.float64))
            assert t.shape == sd[key].shape, f"{path}: {var} has shape {tuple(t.shape)}, torch wants {tuple(sd[key].shape)}"
            sd[key] = t
    net.load_state_dict(sd, strict=True)
    net.eval()
    return torch.softmax(net(x), dim=1).numpy()

def metrics(p):
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    correct = (pred == y).astype(np.float64)
    onehot = np.eye(10)[y]
    m = {"accuracy": correct.mean(),
         "nll": -np.log(np.maximum(p[np.arange(ntest), y], 1e-12)).mean(),
         "brier": ((p - onehot) ** 2).sum(axis=1).mean()}
    ece = 0.0
    for b in range(15):
        sel = (conf > b / 15) & (conf <= (b + 1) / 15)
        if sel.any():
            ece += sel.sum() / ntest * abs(correct[sel].mean() - conf[sel].mean())
    m["ece"] = ece
    return m

def check(label, got, want):
    d = abs(got - want)
    status = "ok" if d <= TOL else "MISMATCH"
    print(f"  {label:28s} valley {got:.6f}  torch {want:.6f}  |diff| {d:.1e}  {status}")
    if d > TOL:
        failures.append(f"{label}: valley {got:.8f} vs torch {want:.8f}")

def scalar(f, name):
    return float(np.asarray(f[name][...]))

probs = [probabilities(m) for m in models]
ref = [metrics(p) for p in probs]
ref_ens = metrics(np.mean(probs, axis=0))

def check_ranges(label, f, members):
    a, n, e, ec, b, h = (scalar(f, v) for v in ("accuracy", "nll", "ece", "ece_count", "brier", "entropy"))
    ok = (0.5 <= a <= 1 and 0 < n < 2.3 and 0 <= e <= 1 and 0 <= ec <= 1 and 0 <= b <= 2
          and 0 <= h <= np.log(10) + 1e-9)
    print(f"{label}: accuracy {a:.4f} nll {n:.4f} ece {e:.4f} ece_count {ec:.4f} brier {b:.4f} entropy {h:.4f}")
    if not ok:
        failures.append(f"{label}: a metric is out of range (accuracy must beat 0.5 after training)")
    if len(f.dimensions["member"]) != members:
        failures.append(f"{label}: member dimension {len(f.dimensions['member'])}, want {members}")
    for v in ("accuracy", "nll", "ece", "ece_count", "brier", "entropy"):
        if f"member_{v}" not in f.variables:
            failures.append(f"{label}: no member_{v}")
    cnt = np.asarray(f["bin_count"][:])
    if cnt.sum() != ntest:
        failures.append(f"{label}: bin_count sums to {cnt.sum()}, want {ntest}")

with netCDF4.Dataset(single_path) as f:
    check_ranges("single", f, 1)
    for k in ("accuracy", "nll", "brier", "ece"):
        check(f"single {k}", scalar(f, k), ref[0][k])
    check("single member_accuracy[0]", float(f["member_accuracy"][0]), ref[0]["accuracy"])
with netCDF4.Dataset(ens_path) as f:
    check_ranges("ensemble", f, 2)
    for i in range(2):
        for k in ("accuracy", "nll", "brier", "ece"):
            check(f"member {i} {k}", float(f[f"member_{k}"][i]), ref[i][k])
    for k in ("accuracy", "nll", "brier", "ece"):
        check(f"ensemble {k}", scalar(f, k), ref_ens[k])
    if not ref_ens["nll"] < max(ref[0]["nll"], ref[1]["nll"]):
        failures.append("ensemble NLL is not below the worse member's (the average looks wrong)")
if failures:
    print("app_evaluate: FAIL:\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"PyTorch reference matches valley on {ntest} test images (tolerance {TOL})")
EOF
st=$?
[[ $st -eq 0 ]] || fail "eval.nc checks failed (see above)"
echo "$name: ok"
