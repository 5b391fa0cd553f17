#!/usr/bin/env python3
"""replay.py KIND FILE WORKDIR -- feeds one fuzz input through bin/valley the way the
matching fuzz target feeds it to the reader, and exits with valley's exit status.

KIND: deck, idx, csv, cifar (inputs of fuzz_deck / fuzz_idx / fuzz_csv / fuzz_cifar, cut into files exactly
as tests/fuzz/fuzz_common.h does), onnx (a .onnx file), dataset, checkpoint, subspace (one NetCDF file).
Environment: VALLEY (bin/valley), FIXTURE (tests/corpus/fixtures/tiny.nc: a valid tiny
dataset the model files refer to). valley's output goes to WORKDIR/valley.log.
Commands:
  deck        valley help train DECK.ini      (or --set STRING for "S:" inputs)
  idx         valley prepare fashion-mnist --set data.source=DIR   (cwd WORKDIR)
  csv         valley prepare diabetes --set data.source=DIR        (cwd WORKDIR)
  onnx        valley import WORKDIR/model.onnx (a copy of FILE)
  dataset     valley train --set data.path=FILE (1 epoch of a small MLP)
  checkpoint  valley evaluate FILE --set data.path=FIXTURE
  subspace    valley surface FILE --set surface.basis=pca --set data.path=FIXTURE (2x2 grid)
"""
import os
import shutil
import struct
import subprocess
import sys

SEP = b"\n%%\n"


def split(data, nmax):
    parts, start = [], 0
    while len(parts) < nmax - 1:
        i = data.find(SEP, start)
        if i < 0:
            break
        parts.append(data[start:i])
        start = i + len(SEP)
    parts.append(data[start:])
    return parts


def idx_defaults():
    images = struct.pack(">IIII", 0x803, 3, 28, 28) + bytes((i * 7) & 255 for i in range(3 * 784))
    labels = struct.pack(">II", 0x801, 3) + bytes([1, 9, 0])
    return [images, labels, images, labels]


def csv_defaults():
    table = "".join(" ".join(f"{r * 10 + c}.5" for c in range(10)) + "\n" for r in range(12))
    target = "".join(f"{100 + r}\n" for r in range(12))
    return [table.encode(), target.encode()]


def cifar_defaults(c100):
    rec = lambda labs, i: bytes(labs) + bytes((k * 13 + i) & 255 for k in range(3072))
    if c100:
        return [rec([0, 0], 0) + rec([19, 99], 1)] * 2
    return [rec([0], 0) + rec([7], 1)] * 6


def write_cifar(data, src):
    """fuzz_cifar's input: flags (bit 0 CIFAR-100, bit 1 the archive's subdirectory), files at SEP."""
    shutil.rmtree(src, ignore_errors=True)
    flags = data[0] if data else 0
    c100 = flags & 1
    names = ["train.bin", "test.bin"] if c100 else [f"data_batch_{b}.bin" for b in range(1, 6)] + ["test_batch.bin"]
    d = os.path.join(src, "cifar-100-binary" if c100 else "cifar-10-batches-bin") if flags & 2 else src
    os.makedirs(d)
    parts = split(data[1:], len(names)) if data else []
    for k, name in enumerate(names):
        with open(os.path.join(d, name), "wb") as f:
            f.write(parts[k] if k < len(parts) else cifar_defaults(c100)[k])
    return "cifar100" if c100 else "cifar10"


def write_parts(data, names, defaults, src):
    shutil.rmtree(src, ignore_errors=True)  # no file of an earlier replay may stay
    os.makedirs(src)
    flags = data[0] if data else 0
    parts = split(data[1:], len(names)) if data else []
    for k, name in enumerate(names):
        body = parts[k] if k < len(parts) else defaults[k]
        fn = name + ".gz" if (flags >> k) & 1 else name
        with open(os.path.join(src, fn), "wb") as f:
            f.write(body)


def main():
    kind, path, work = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
    valley = os.path.abspath(os.environ.get("VALLEY", "bin/valley"))
    fixture = os.path.abspath(os.environ.get("FIXTURE", "tests/corpus/fixtures/tiny.nc"))
    os.makedirs(work, exist_ok=True)
    data = open(path, "rb").read()
    out = os.path.join(work, "out")
    cwd = os.getcwd()
    if kind == "deck":
        if data.startswith(b"S:"):
            s = data[2:].split(b"\0")[0]
            cmd = [valley, "help", "train", b"--set".decode(), os.fsdecode(s)]
        else:
            deck = os.path.join(work, "deck.ini")
            open(deck, "wb").write(data)
            cmd = [valley, "help", "train", deck]
    elif kind == "idx":
        write_parts(data, ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                           "t10k-labels-idx1-ubyte"], idx_defaults(), os.path.join(work, "src"))
        cmd, cwd = [valley, "prepare", "fashion-mnist", "--set", "data.source=" + os.path.join(work, "src")], work
    elif kind == "csv":
        write_parts(data, ["diabetes_data_raw.csv", "diabetes_target.csv"], csv_defaults(), os.path.join(work, "src"))
        cmd, cwd = [valley, "prepare", "diabetes", "--set", "data.source=" + os.path.join(work, "src")], work
    elif kind == "cifar":
        ds = write_cifar(data, os.path.join(work, "src"))
        cmd, cwd = [valley, "prepare", ds, "--set", "data.source=" + os.path.join(work, "src"),
                    "--set", "data.path=" + os.path.join(out, "cifar.nc")], work
    elif kind == "onnx":
        model = os.path.join(work, "model.onnx")
        open(model, "wb").write(data)
        cmd = [valley, "import", model, "--out", out]
    elif kind == "dataset":
        cmd = [valley, "train", "--set", "data.path=" + path, "--set", "model.kind=mlp", "--set", "model.widths=4",
               "--set", "train.epochs=1", "--out", out]
    elif kind == "checkpoint":
        cmd = [valley, "evaluate", path, "--set", "data.path=" + fixture, "--out", out]
    elif kind == "subspace":
        cmd = [valley, "surface", path, "--set", "surface.basis=pca", "--set", "data.path=" + fixture,
               "--set", "surface.nx=2", "--set", "surface.ny=2", "--out", out]
    else:
        sys.exit(f"replay.py: unknown kind {kind}")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    with open(os.path.join(work, "valley.log"), "wb") as log:
        try:
            r = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=60)
            code = r.returncode
        except subprocess.TimeoutExpired:
            log.write(b"replay.py: timeout after 60 s\n")
            code = 124
    sys.exit(128 - code if code < 0 else code)  # killed by signal N -> 128+N like the shell


if __name__ == "__main__":
    main()
