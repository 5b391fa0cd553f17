#!/usr/bin/env bash
# tests/fuzz/make_seeds.sh OUTDIR — valid starting inputs for the fuzz targets, made by
# valley itself and by python3-netcdf4 (so the fuzzer starts from files that pass and
# mutates them into ones that must be rejected):
#   OUTDIR/deck     the repository's decks and a few hand-written ones
#   OUTDIR/onnx     small valid ONNX networks (python3-onnx, and PyTorch's export)
#   OUTDIR/idx      flags byte + four small valid IDX files (plain and gzip)
#   OUTDIR/csv      flags byte + Debian's scikit-learn diabetes table and target
#   OUTDIR/netcdf   a tiny 4x4-image classification dataset (NetCDF-4 and CDF-5), a tiny
#                   regression dataset, and from valley on the tiny dataset (an MLP
#                   16-3-2, 59 parameters): model.nc, a checkpoint, swag.nc, curve.nc,
#                   subspace.nc (`valley pca`)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:?usage: make_seeds.sh OUTDIR}
VALLEY=${VALLEY:-$PWD/bin/valley}
PYTHON=${PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
mkdir -p "$OUT"/{deck,idx,csv,cifar,netcdf,onnx}
# ONNX (fuzz_onnx): a small valid network (tests/fuzz/make_onnx_corpus.py) and PyTorch's exports of the
# test networks (tests/py/onnx_models.py: residual adds, batch norm, the shape arithmetic of view)
"$PYTHON" tests/fuzz/make_onnx_corpus.py "$OUT/onnx.bad" "$OUT/onnx" >/dev/null && rm -rf "$OUT/onnx.bad"
[[ -f input/data/fashion-mnist.nc ]] && "$PYTHON" tests/py/onnx_models.py "$OUT/onnx" input/data/fashion-mnist.nc \
    resnet8noshort >/dev/null 2>&1 && rm -f "$OUT"/onnx/*.npy
# CIFAR (fuzz_cifar): flags byte + the binary files cut at the separator
"$PYTHON" - "$OUT/cifar" <<'PY'
import os, sys
out, SEP = sys.argv[1], b"\n%%\n"
def rec(n, labels):
    return b"".join(bytes(labels(i)) + bytes((i * 31 + k) % 256 for k in range(3072)) for i in range(n))
c10 = [rec(2, lambda i: [i % 10]) for _ in range(5)] + [rec(1, lambda i: [3])]
open(os.path.join(out, "c10"), "wb").write(b"\x00" + SEP.join(c10))
open(os.path.join(out, "c10_subdir"), "wb").write(b"\x02" + SEP.join(c10))
open(os.path.join(out, "c100"), "wb").write(b"\x01" + SEP.join([rec(3, lambda i: [i, 50 + i]), rec(1, lambda i: [19, 99])]))
PY
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cp input/*.ini "$OUT/deck/"
printf '[train]\nepochs = 3  # short\nlr = "0.1"\n[model]\nwidths = 64, 32\n' >"$OUT/deck/small.ini"
printf '[data]\npath = "a # b \\" c"\n\r\n; comment\n[parallel]\ngroup_size=0\n' >"$OUT/deck/quotes.ini"
printf 'S:train.lr=0.05' >"$OUT/deck/set_lr"
printf 'S:model.widths=8,8,8' >"$OUT/deck/set_widths"

"$PYTHON" - "$OUT" <<'PY'
import gzip, os, struct, sys
out = sys.argv[1]
SEP = b"\n%%\n"
def idx_images(n):
    return struct.pack(">IIII", 0x803, n, 28, 28) + bytes((i * 7) % 256 for i in range(n * 784))
def idx_labels(n):
    return struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n))
parts = [idx_images(3), idx_labels(3), idx_images(2), idx_labels(2)]
open(os.path.join(out, "idx", "plain"), "wb").write(b"\x00" + SEP.join(parts))
open(os.path.join(out, "idx", "gzip"), "wb").write(b"\x0f" + SEP.join(gzip.compress(p) for p in parts))
open(os.path.join(out, "idx", "defaults"), "wb").write(b"\x00")
d = "/usr/lib/python3/dist-packages/sklearn/datasets/data"
x = open(os.path.join(d, "diabetes_data_raw.csv.gz"), "rb").read()
y = open(os.path.join(d, "diabetes_target.csv.gz"), "rb").read()
open(os.path.join(out, "csv", "sklearn_gz"), "wb").write(b"\x03" + x + SEP + y)
xt, yt = gzip.decompress(x).splitlines(True), gzip.decompress(y).splitlines(True)
open(os.path.join(out, "csv", "head_plain"), "wb").write(b"\x00" + b"".join(xt[:12]) + SEP + b"".join(yt[:12]))
open(os.path.join(out, "csv", "commas"), "wb").write(
    b"\x00" + b"".join(l.strip().replace(b" ", b",") + b"\r\n" for l in xt[:12]) + SEP + b"".join(yt[:12]))
PY

# tiny datasets (python3-netcdf4), laid out as data.h says
"$PYTHON" - "$OUT/netcdf" "$work" <<'PY'
import os, sys
import numpy as np, netCDF4
out, work = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(1)
def classification(path, fmt):
    with netCDF4.Dataset(path, "w", format=fmt) as f:
        for name, n in (("train", 16), ("test", 8)):
            f.createDimension(name, n)
        for d, n in (("channel", 1), ("height", 4), ("width", 4), ("class", 2)):
            f.createDimension(d, n)
        for split, n in (("train", 16), ("test", 8)):
            x = f.createVariable(f"{split}_x", "u1", (split, "channel", "height", "width"), fill_value=False)
            x[:] = rng.integers(0, 256, (n, 1, 4, 4))
            y = f.createVariable(f"{split}_y", "i4", (split,))
            y[:] = np.arange(n) % 2
        f.setncatts(dict(dataset="tiny", task="classification", n_classes=np.int32(2), pixel_scale=1 / 255,
                         pixel_mean=0.5, pixel_std=0.29))
def regression(path, fmt):
    with netCDF4.Dataset(path, "w", format=fmt) as f:
        for d, n in (("train", 12), ("test", 5), ("feature", 2), ("target", 1)):
            f.createDimension(d, n)
        for split, n in (("train", 12), ("test", 5)):
            f.createVariable(f"{split}_x", "f4", (split, "feature"))[:] = rng.normal(size=(n, 2))
            f.createVariable(f"{split}_y", "f4", (split, "target"))[:] = rng.normal(size=(n, 1))
        f.setncatts(dict(dataset="tinyreg", task="regression", x_mean=np.zeros(2), x_std=np.ones(2), y_mean=0.0,
                         y_std=1.0))
classification(os.path.join(work, "tiny.nc"), "NETCDF4")
classification(os.path.join(out, "dataset_nc4.nc"), "NETCDF4")
classification(os.path.join(out, "dataset_cdf5.nc"), "NETCDF3_64BIT_DATA")
regression(os.path.join(out, "regression_nc4.nc"), "NETCDF4")
regression(os.path.join(out, "regression_classic.nc"), "NETCDF3_CLASSIC")
PY

tiny=(--set data.path="$work/tiny.nc" --set model.kind=mlp --set model.widths=3
      --set train.batch_size=4 --set run.seed=2)
"$VALLEY" train "${tiny[@]}" --set train.epochs=2 --set train.checkpoint_every=1 --set train.swag=true \
    --set train.swa_start=1 --set train.swag_rank=3 --out "$work/a" >"$work/a.log" 2>&1 || { cat "$work/a.log"; exit 1; }
"$VALLEY" train "${tiny[@]}" --set run.seed=3 --set train.epochs=1 --out "$work/b" >"$work/b.log" 2>&1 || { cat "$work/b.log"; exit 1; }
"$VALLEY" curve "$work/a/model.nc" "$work/b/model.nc" "${tiny[@]}" --set curve.epochs=1 --set curve.points=3 \
    --out "$work/c" >"$work/c.log" 2>&1 || { cat "$work/c.log"; exit 1; }
"$VALLEY" pca "$work/a/swag.nc" "${tiny[@]}" --set pca.rank=2 --out "$work/p" >"$work/p.log" 2>&1 || { cat "$work/p.log"; exit 1; }
cp "$work/a/model.nc" "$OUT/netcdf/model.nc"
cp "$work/a/checkpoints/epoch_0001.nc" "$OUT/netcdf/checkpoint.nc"
cp "$work/a/swag.nc" "$OUT/netcdf/swag.nc"
cp "$work/c/curve.nc" "$OUT/netcdf/curve.nc"
cp "$work/p/subspace.nc" "$OUT/netcdf/subspace.nc"
ls -l "$OUT"/*
