#!/usr/bin/env bash
# CIFAR-10 / CIFAR-100 (issue 15): `valley prepare cifar10|cifar100 --set data.source=DIR`
# on small files the test writes in the official binary format, byte for byte (CIFAR-10:
# data_batch_1..5.bin and test_batch.bin, records of 1 label byte + 3072 pixels, R then G then
# B planes of 32x32 row-major; CIFAR-100: train.bin and test.bin, records of coarse label,
# fine label, 3072 pixels). Checks, against numpy on the same bytes: the images (n, 3, 32, 32),
# labels (CIFAR-100: the fine ones), the per-channel pixel_mean / pixel_std (population, over
# the training pixels / 255); the files in the archive's subdirectory are found too; a resnet
# trains on the file with crop-flip (padding 4 at 32x32, per-channel black padding) on 1 and 2
# ranks to the same model (app_ranks.sh's epoch tolerance), and on CIFAR-100 with 100 outputs.
# Malformed inputs: a truncated file, a size that is not a
# whole number of records, a label out of range (CIFAR-10: 10; CIFAR-100: fine 100, coarse
# 20), a missing file, an empty file, a directory in a file's place: exit 2, a message naming
# the file, no output file.
set -u
source "$(dirname "$0")/lib.bash"
test_setup data_cifar
src=$dir/src
mkdir -p "$src/c10/cifar-10-batches-bin" "$src/c100"
"$PYTHON" - "$src" <<'PY'
import sys, numpy as np
src = sys.argv[1]
rng = np.random.default_rng(5)
def records(n, nlab, ncls, ncoarse=20):
    # images with a different law per channel, so that per-channel statistics differ
    x = np.stack([rng.integers(0, 256, (n, 32, 32)), rng.integers(40, 120, (n, 32, 32)),
                  rng.integers(200, 256, (n, 32, 32))], axis=1).astype(np.uint8)
    fine = rng.integers(0, ncls, n).astype(np.uint8)
    labs = [fine] if nlab == 1 else [rng.integers(0, ncoarse, n).astype(np.uint8), fine]
    rec = np.concatenate([l[:, None] for l in labs] + [x.reshape(n, 3072)], axis=1)
    return rec.tobytes(), x, fine
X, Y = [], []
for b in range(1, 6):  # in the archive's subdirectory, as cifar-10-binary.tar.gz unpacks
    raw, x, y = records(20, 1, 10)
    open(f"{src}/c10/cifar-10-batches-bin/data_batch_{b}.bin", "wb").write(raw)
    X.append(x); Y.append(y)
raw, xt, yt = records(10, 1, 10)
open(f"{src}/c10/cifar-10-batches-bin/test_batch.bin", "wb").write(raw)
np.savez(f"{src}/c10.npz", x=np.concatenate(X), y=np.concatenate(Y), xt=xt, yt=yt)
raw, x, y = records(40, 2, 100)
open(f"{src}/c100/train.bin", "wb").write(raw)
raw, xt, yt = records(12, 2, 100)
open(f"{src}/c100/test.bin", "wb").write(raw)
np.savez(f"{src}/c100.npz", x=x, y=y, xt=xt, yt=yt)
PY
[[ $? -eq 0 ]] || fail "could not write the CIFAR files"

check() { # NPZ NC
    "$PYTHON" - "$1" "$2" <<'PY' || err "$2 does not hold what the binary files hold"
import sys, numpy as np, netCDF4
ref = np.load(sys.argv[1])
with netCDF4.Dataset(sys.argv[2]) as f:
    f.set_auto_mask(False)
    assert f["train_x"].shape == ref["x"].shape and f["test_x"].shape == ref["xt"].shape, "shapes"
    assert (f["train_x"][:] == ref["x"]).all() and (f["test_x"][:] == ref["xt"]).all(), "pixels"
    assert (f["train_y"][:] == ref["y"]).all() and (f["test_y"][:] == ref["yt"]).all(), "labels"
    x = ref["x"].astype(np.float64) / 255
    m, s = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))
    fm, fs = np.asarray(f.getncattr("pixel_mean")), np.asarray(f.getncattr("pixel_std"))
    assert fm.shape == (3,) and np.allclose(fm, m, rtol=1e-12, atol=0) and np.allclose(fs, s, rtol=1e-12, atol=0), \
        f"per-channel statistics {fm} {fs} vs {m} {s}"
    print(f"  {sys.argv[2].split('/')[-1]}: {ref['x'].shape[0]}+{ref['xt'].shape[0]} images, "
          f"mean {np.round(fm, 4)}, std {np.round(fs, 4)} = numpy")
PY
}

"$VALLEY" prepare cifar10 --set data.source="$src/c10" --set data.path="$dir/c10.nc" >"$dir/p10.log" 2>&1 ||
    { cat "$dir/p10.log"; fail "prepare cifar10"; }
check "$src/c10.npz" "$dir/c10.nc"
"$VALLEY" prepare cifar100 --set data.source="$src/c100" --set data.path="$dir/c100.nc" >"$dir/p100.log" 2>&1 ||
    { cat "$dir/p100.log"; fail "prepare cifar100"; }
check "$src/c100.npz" "$dir/c100.nc"

# training on the file, crop-flip at 32x32 (padding 4), 1 and 2 ranks: the same first loss
T=(--set data.dataset=cifar10 --set data.path="$dir/c10.nc" --set model.kind=resnet --set model.depth=8
   --set model.width_factor=0.25 --set data.augment=crop-flip --set train.epochs=1 --set train.batch_size=50)
for np in 1 2; do
    $MPIRUN -np $np "$VALLEY" train "${T[@]}" --out "$dir/t$np" >"$dir/t$np.log" 2>&1 ||
        { tail -5 "$dir/t$np.log"; err "train on cifar10 on $np rank(s)"; }
done
"$PYTHON" tests/py/nc_compare.py "$dir/t1/model.nc" "$dir/t2/model.nc" --tol 5e-2 --exclude train_position ||
    err "cifar10 training on 1 and 2 ranks differs"
grep -q '3x32x32' "$dir/t1.log" || err "the model is not 3x32x32"
"$VALLEY" train "${T[@]}" --set data.dataset=cifar100 --set data.path="$dir/c100.nc" --out "$dir/t100" >"$dir/t100.log" 2>&1 ||
    { tail -5 "$dir/t100.log"; err "train on cifar100"; }
grep -q '3x32x32 -> 100' "$dir/t100.log" || err "cifar100 model does not have 100 outputs"

# malformed inputs: exit 2, the file named, nothing written
bad() { # LABEL DATASET DIR EXPECT_IN_MESSAGE
    local label=$1 ds=$2 d=$3 want=$4 st=0
    "$VALLEY" prepare "$ds" --set data.source="$d" --set data.path="$dir/bad_$label.nc" >"$dir/bad.log" 2>&1 || st=$?
    echo "  $label: exit $st: $(head -c 160 "$dir/bad.log")"
    [[ $st -eq 2 ]] || err "$label: exit status $st, want 2"
    grep -q -- "$want" "$dir/bad.log" || err "$label: the message does not say '$want'"
    ls "$dir"/bad_"$label".nc* >/dev/null 2>&1 && err "$label: an output file was left"
    return 0
}
mk10() { rm -rf "$dir/m"; mkdir -p "$dir/m"; cp "$src"/c10/cifar-10-batches-bin/*.bin "$dir/m/"; }
mk10; head -c 30000 "$src/c10/cifar-10-batches-bin/data_batch_3.bin" >"$dir/m/data_batch_3.bin"
bad truncated cifar10 "$dir/m" "data_batch_3.bin: 30000 bytes is not a whole number"
mk10; head -c 3073 "$src/c10/cifar-10-batches-bin/test_batch.bin" >"$dir/m/test_batch.bin"; printf 'x' >>"$dir/m/test_batch.bin"
bad extra_byte cifar10 "$dir/m" "test_batch.bin: 3074 bytes"
mk10; printf '\x0a' | dd of="$dir/m/data_batch_2.bin" bs=1 seek=$((3073 * 4)) conv=notrunc status=none
bad label10 cifar10 "$dir/m" "data_batch_2.bin: record 4: label 10 is outside 0..9"
mk10; rm "$dir/m/data_batch_5.bin"
bad missing cifar10 "$dir/m" "data_batch_5.bin: not found"
mk10; : >"$dir/m/data_batch_1.bin"
bad empty cifar10 "$dir/m" "data_batch_1.bin: 0 bytes"
mk10; rm "$dir/m/test_batch.bin"; mkdir "$dir/m/test_batch.bin"
bad directory cifar10 "$dir/m" "test_batch.bin: not a regular file"
rm -rf "$dir/m"; mkdir -p "$dir/m"; cp "$src"/c100/*.bin "$dir/m/"
printf '\x64' | dd of="$dir/m/test.bin" bs=1 seek=$((3074 * 2 + 1)) conv=notrunc status=none
bad fine100 cifar100 "$dir/m" "test.bin: record 2: fine label 100 is outside 0..99"
cp "$src/c100/test.bin" "$dir/m/test.bin"; printf '\x14' | dd of="$dir/m/train.bin" bs=1 seek=0 conv=notrunc status=none
bad coarse100 cifar100 "$dir/m" "train.bin: record 0: coarse label 20 is outside 0..19"
bad nosource cifar10 "" "data.source"

[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "data_cifar: ok"
