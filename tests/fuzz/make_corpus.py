#!/usr/bin/env python3
"""make_corpus.py SEEDS OUT -- hand-made malformed inputs for tests/corpus/<reader>/.

Each file breaks one rule a reader must enforce (and is named after it); every one must be
rejected by bin/valley with exit status 2 and a message (tests/sh/rel_corpus.sh). SEEDS is
the directory made by tests/fuzz/make_seeds.sh (valid files to break); OUT is tests/corpus.
Idempotent: rewrites the hand_* files only.
"""
import gzip
import os
import shutil
import struct
import sys

import numpy as np
import netCDF4

seeds, out = sys.argv[1], sys.argv[2]
SEP = b"\n%%\n"


def put(reader, name, data):
    os.makedirs(os.path.join(out, reader), exist_ok=True)
    with open(os.path.join(out, reader, "hand_" + name), "wb") as f:
        f.write(data)


# ---- decks
decks = {
    "unknown_key.ini": b"[train]\nepochz = 3\n",
    "no_section.ini": b"epochs = 3\n",
    "twice.ini": b"[train]\nepochs = 3\nepochs = 4\n",
    "nan.ini": b"[train]\nlr = nan\n",
    "overflow.ini": b"[train]\nepochs = 99999999999999999999999\n",
    "binary.ini": b"[train]\nepochs = 3\x00\x01\n",
    "long_line.ini": b"[train]\nresume = " + b"x" * 5000 + b"\n",
    "unterminated_quote.ini": b'[data]\npath = "abc\n',
    "bad_escape.ini": b'[data]\npath = "a\\q"\n',
    "list_too_long.ini": b"[model]\nwidths = " + b",".join(b"8" for _ in range(70)) + b"\n",
    "empty_section.ini": b"[]\n",
    "key_with_section.ini": b"[train]\ntrain.epochs = 3\n",
    "set_unknown": b"S:train.nope=1",
    "set_no_dot": b"S:epochs=1",
    "set_range": b"S:train.lr=-5",
}
for k, v in decks.items():
    put("deck", k, v)

# ---- IDX (flags byte, then parts cut at SEP; missing parts are valid defaults)
def images(n, h=28, w=28, magic=0x803):
    return struct.pack(">IIII", magic, n, h, w) + bytes(n * h * w)
def labels(n, magic=0x801, val=1):
    return struct.pack(">II", magic, n) + bytes([val]) * n
idx = {
    "bad_magic": images(3, magic=0x804),
    "huge_count": struct.pack(">IIII", 0x803, 0x7FFFFFFF, 28, 28) + bytes(784),
    "count_over_int32": struct.pack(">IIII", 0x803, 0xFFFFFFFF, 28, 28),
    "not_28x28": images(3, 32, 32),
    "truncated": images(3)[:1000],
    "trailing": images(3) + b"xyz",
    "header_only": images(3)[:10],
    "empty": b"",
}
for k, v in idx.items():
    put("idx", k, b"\x00" + v)
put("idx", "label_out_of_range", b"\x00" + images(3) + SEP + labels(3, val=10))
put("idx", "count_mismatch", b"\x00" + images(3) + SEP + labels(2))
put("idx", "corrupt_gzip", b"\x01" + gzip.compress(images(3))[:-20] + b"garbage!" * 3)
put("idx", "zero_images", b"\x00" + images(0) + SEP + labels(0))

# ---- CSV
row = b" ".join(b"%d.5" % c for c in range(10)) + b"\n"
tgt = b"".join(b"%d\n" % (100 + r) for r in range(12))
csv = {
    "not_a_number": row * 5 + b"1 2 3 abc 5 6 7 8 9 10\n" + row * 6 + SEP + tgt,
    "nan_value": row * 5 + b"1 2 3 nan 5 6 7 8 9 10\n" + row * 6 + SEP + tgt,
    "inf_value": row * 5 + b"1 2 3 1e999 5 6 7 8 9 10\n" + row * 6 + SEP + tgt,
    "ragged": row * 5 + b"1 2 3\n" + row * 6 + SEP + tgt,
    "empty_field": row.replace(b" ", b",") * 5 + b"1,2,,4,5,6,7,8,9,10\n" + row.replace(b" ", b",") * 6 + SEP + tgt,
    "rows_mismatch": row * 12 + SEP + tgt[:-4],
    "too_few_rows": row * 5 + SEP + tgt[:20],
    "line_too_long": b"1 " * 40000 + b"\n" + SEP + tgt,
    "empty": SEP + tgt,
    "missing_comma": b"1,2 3,4,5,6,7,8,9,10\n" * 12 + SEP + tgt,
}
for k, v in csv.items():
    put("csv", k, b"\x00" + v)

# ---- NetCDF: copies of the valid seeds with one thing broken
tmpdir = os.path.join(out, ".tmp_make_corpus")
os.makedirs(tmpdir, exist_ok=True)


def broken(reader, name, seed, edit, fmt=None):
    p = os.path.join(tmpdir, name + ".nc")
    if fmt:  # rebuild in another format: copy via netCDF4
        with netCDF4.Dataset(os.path.join(seeds, seed)) as src, netCDF4.Dataset(p, "w", format=fmt) as dst:
            dst.setncatts({a: src.getncattr(a) for a in src.ncattrs()})
            for d in src.dimensions.values():
                dst.createDimension(d.name, len(d))
            for v in src.variables.values():
                w = dst.createVariable(v.name, v.dtype, v.dimensions)
                w[...] = v[...]
    else:
        shutil.copy(os.path.join(seeds, seed), p)
    with netCDF4.Dataset(p, "a") as f:
        edit(f)
    put(reader, name + ".nc", open(p, "rb").read())


def retype(f, name, dtype):
    v = f[name]
    data, dims = v[...], v.dimensions
    f.renameVariable(name, name + "_old")
    f.createVariable(name, dtype, dims)[...] = data


# dataset (classification seed dataset_nc4.nc: train 16, test 8, 1x4x4, 2 classes)
broken("dataset", "x_float", "dataset_nc4.nc", lambda f: retype(f, "train_x", "f4"))
broken("dataset", "y_double", "dataset_nc4.nc", lambda f: retype(f, "train_y", "f8"))
broken("dataset", "n_classes_zero", "dataset_nc4.nc", lambda f: f.setncattr("n_classes", np.int32(0)))
broken("dataset", "n_classes_fraction", "dataset_nc4.nc", lambda f: f.setncattr("n_classes", 2.5))
broken("dataset", "n_classes_text", "dataset_nc4.nc", lambda f: f.setncattr("n_classes", "ten"))
broken("dataset", "pixel_std_zero", "dataset_nc4.nc", lambda f: f.setncattr("pixel_std", 0.0))
broken("dataset", "pixel_mean_nan", "dataset_nc4.nc", lambda f: f.setncattr("pixel_mean", np.nan))
broken("dataset", "pixel_scale_two_values", "dataset_nc4.nc", lambda f: f.setncattr("pixel_scale", np.array([1.0, 2.0])))
broken("dataset", "label_out_of_range", "dataset_nc4.nc", lambda f: f["train_y"].__setitem__(3, 7))
broken("dataset", "label_negative", "dataset_nc4.nc", lambda f: f["train_y"].__setitem__(0, -1))
broken("dataset", "task_unknown", "dataset_nc4.nc", lambda f: f.setncattr("task", "clustering"))
broken("dataset", "dataset_empty_name", "dataset_nc4.nc", lambda f: f.setncattr("dataset", ""))
broken("dataset", "no_task", "dataset_nc4.nc", lambda f: f.delncattr("task"))
def y_len(f):
    f.createDimension("other", 5)
    f.renameVariable("train_y", "train_y_old")
    f.createVariable("train_y", "i4", ("other",))[:] = 0
broken("dataset", "y_length_mismatch", "dataset_nc4.nc", y_len)
def x_3d(f):
    f.renameVariable("train_x", "train_x_old")
    f.createVariable("train_x", "u1", ("train", "height", "width"))[:] = 0
broken("dataset", "x_three_axes", "dataset_nc4.nc", x_3d)
broken("dataset", "regression_x_inf", "regression_nc4.nc", lambda f: f["train_x"].__setitem__((2, 1), np.inf))
broken("dataset", "regression_std_negative", "regression_nc4.nc", lambda f: f.setncattr("x_std", np.array([1.0, -1.0])))
broken("dataset", "regression_x_mean_short", "regression_nc4.nc", lambda f: f.setncattr("x_mean", np.array([0.0])))
broken("dataset", "classic_label_out_of_range", "dataset_nc4.nc", lambda f: f["train_y"].__setitem__(1, 5),
       fmt="NETCDF3_64BIT_DATA")
# a CDF-5 header that declares 2^31 - 1 training images of 4x4 (8 GiB of pixels) in a tiny file
hdr = bytearray(open(os.path.join(seeds, "dataset_cdf5.nc"), "rb").read())
put("dataset", "classic_truncated.nc", bytes(hdr[: len(hdr) // 2]))
put("dataset", "random_bytes.nc", bytes(np.random.default_rng(5).integers(0, 256, 3000, dtype=np.uint8)))
put("dataset", "hdf5_truncated.nc", open(os.path.join(seeds, "dataset_nc4.nc"), "rb").read()[:6000])

# checkpoint (seed model.nc: MLP 16-3-2, 59 parameters, with momentum and position)
broken("checkpoint", "kind_unknown", "model.nc", lambda f: f.setncattr("model_kind", "transformer"))
broken("checkpoint", "input_shape_two", "model.nc", lambda f: f.setncattr("model_input_shape", np.array([1, 4], "i4")))
broken("checkpoint", "input_shape_huge", "model.nc", lambda f: f.setncattr("model_input_shape", np.array([1e300, 4, 4])))
broken("checkpoint", "input_shape_negative", "model.nc", lambda f: f.setncattr("model_input_shape", np.array([1, -4, 4], "i4")))
broken("checkpoint", "out_dim_nan", "model.nc", lambda f: f.setncattr("model_out_dim", np.nan))
broken("checkpoint", "nwidths_large", "model.nc", lambda f: f.setncattr("model_nwidths", np.int32(1000)))
broken("checkpoint", "widths_huge", "model.nc", lambda f: f.setncattr("model_widths", np.array([2 ** 30], "i4")))
broken("checkpoint", "widths_count_mismatch", "model.nc", lambda f: f.setncattr("model_widths", np.array([3, 3], "i4")))
broken("checkpoint", "tensor_double", "model.nc", lambda f: retype(f, "fc1_weight", "f8"))
broken("checkpoint", "tensor_missing", "model.nc", lambda f: f.renameVariable("fc1_bias", "fc1_bias_gone"))
def wrong_shape(f):
    f.createDimension("n5", 5)
    f.renameVariable("fc1_bias", "fc1_bias_old")
    f.createVariable("fc1_bias", "f4", ("n5",))[:] = 0
broken("checkpoint", "tensor_shape", "model.nc", wrong_shape)
broken("checkpoint", "no_model_kind", "model.nc", lambda f: f.delncattr("model_kind"))
broken("checkpoint", "dataset_attr_number", "model.nc", lambda f: f.setncattr("dataset", 3.0))

# subspace (seed subspace.nc: basis (2, 59), shift (59), model attributes)
broken("subspace", "basis_double", "subspace.nc", lambda f: retype(f, "basis", "f8"))
broken("subspace", "no_basis", "subspace.nc", lambda f: f.renameVariable("basis", "basis_gone"))
broken("subspace", "no_shift", "subspace.nc", lambda f: f.renameVariable("shift", "shift_gone"))
def basis_wide(f):
    f.createDimension("param2", 60)
    f.renameVariable("basis", "basis_old")
    f.createVariable("basis", "f4", (f["basis_old"].dimensions[0], "param2"))[:] = 0
broken("subspace", "basis_wrong_width", "subspace.nc", basis_wide)
broken("subspace", "model_out_dim_zero", "subspace.nc", lambda f: f.setncattr("model_out_dim", np.int32(0)))
put("subspace", "hdf5_truncated.nc", open(os.path.join(seeds, "subspace.nc"), "rb").read()[:9000])
shutil.rmtree(tmpdir)
