#!/usr/bin/env bash
# Issue 18: `valley prepare mnist --set data.source=DIR` (MNIST's IDX files are not in Debian: a
# synthetic set in MNIST's format here), and bma.ood_data: a Fashion-MNIST model's methods also
# evaluated on another dataset's test images. The mean predictive entropy bma reports on them
# must equal an independent NumPy forward of the mlp (model.nc's tensors) on those images
# normalised with Fashion-MNIST's pixel statistics (not MNIST's own) to 1e-4; a missing
# data.source and bma.ood_data beside data.classes exit 2 naming the key, leaving no file.
set -eu
source "$(dirname "$0")/lib.bash"
test_setup data_mnist_ood
mkdir -p "$dir/src"
"$PYTHON" - "$dir/src" <<'PY'
import gzip, struct, sys
import numpy as np
r = np.random.default_rng(7)
for prefix, n in (("train", 300), ("t10k", 120)):
    x = np.zeros((n, 28, 28), np.uint8)
    y = r.integers(0, 10, n).astype(np.uint8)
    for i in range(n):  # a bright stroke per digit class on a dark background, MNIST-like statistics
        x[i, 4 + 2 * y[i]: 8 + 2 * y[i], 6:22] = r.integers(150, 256, (4, 16))
    with gzip.open(f"{sys.argv[1]}/{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + x.tobytes())
    with open(f"{sys.argv[1]}/{prefix}-labels-idx1-ubyte", "wb") as f:  # one plain, one compressed
        f.write(struct.pack(">II", 0x801, n) + y.tobytes())
PY
"$VALLEY" prepare mnist --set data.source="$dir/src" --set data.path="$dir/mnist.nc" > "$dir/prep.log" 2>&1 ||
    { cat "$dir/prep.log"; fail "prepare mnist"; }
set +e
"$VALLEY" prepare mnist --set data.path="$dir/nosrc.nc" > "$dir/nosrc.log" 2>&1
code=$?
set -e
[[ $code -eq 2 ]] && grep -q "data.source" "$dir/nosrc.log" && [[ ! -e $dir/nosrc.nc ]] ||
    { cat "$dir/nosrc.log"; fail "prepare mnist without data.source: status $code, want 2 and a message naming data.source"; }
common=(--set data.train_subset=1000 --set data.test_subset=200 --set model.kind=mlp --set model.widths=32)
"$VALLEY" train "${common[@]}" --set train.epochs=1 --out "$dir/train" > "$dir/train.log" 2>&1 || { tail "$dir/train.log"; fail "train"; }
$MPIRUN -np 2 "$VALLEY" bma "$dir/train/model.nc" "${common[@]}" --set bma.methods=sgd --set bma.ood_data="$dir/mnist.nc" \
    --out "$dir/bma" > "$dir/bma.log" 2>&1 || { tail "$dir/bma.log"; fail "bma with bma.ood_data on 2 ranks"; }
"$PYTHON" - "$dir" <<'PY' || fail "the out-of-distribution entropy"
import sys
import numpy as np
from netCDF4 import Dataset
d = sys.argv[1]
with Dataset(f"{d}/mnist.nc") as f:
    assert f.dataset == "mnist" and int(f.n_classes) == 10, (f.dataset, f.n_classes)
    x = np.asarray(f["test_x"][:], dtype=np.float64).reshape(-1, 784)
    assert x.shape[0] == 120 and f["train_x"].shape[0] == 300
    assert abs(float(np.mean(f["train_x"][:] / 255.0)) - float(f.pixel_mean)) < 1e-6  # its own statistics
with Dataset("input/data/fashion-mnist.nc") as f:
    scale, mean, std = float(f.pixel_scale), float(f.pixel_mean), float(f.pixel_std)
with Dataset(f"{d}/train/model.nc") as f:
    W1, b1, W2, b2 = (np.asarray(f[k][:], dtype=np.float64) for k in ("fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"))
z = np.maximum(((x * scale - mean) / std) @ W1.T + b1, 0) @ W2.T + b2
p = np.exp(z - z.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
want = float(np.mean(-(p * np.log(np.maximum(p, 1e-300))).sum(1)))
with Dataset(f"{d}/bma/bma.nc") as f:
    got = float(f["ood_entropy"][0]); n = int(f.n_ood); cls = f.ood_classes
assert n == 120 and "every class of" in cls, (n, cls)
assert abs(got - want) <= 1e-4 * want, (got, want)
print(f"ood entropy {got:.6f}, NumPy {want:.6f}")
PY
set +e
"$VALLEY" bma "$dir/train/model.nc" "${common[@]}" --set bma.methods=sgd --set bma.ood_data="$dir/mnist.nc" \
    --set data.classes=0,1,2,3,4 --out "$dir/both" > "$dir/both.log" 2>&1
code=$?
set -e
[[ $code -eq 2 ]] && grep -q "bma.ood_data" "$dir/both.log" && [[ ! -e $dir/both/bma.nc ]] ||
    { cat "$dir/both.log"; fail "bma.ood_data with data.classes: status $code, want 2 naming bma.ood_data"; }
echo "data_mnist_ood: ok"
