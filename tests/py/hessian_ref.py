#!/usr/bin/env python3
"""Hessian-vector products and dense Hessians in PyTorch (float64), for tests/unit/test_hvp.c.

Usage: hessian_ref.py DIR FAMILY --input CxHxW --out K --batch N --candidates M --vectors V [--dense]
                      [model options]
DIR holds manifest.txt, params.f32, state.f32 (as test_torch.c writes them), x.f32 (M candidate
batches of N inputs), y.i32 and v.f32 (V direction vectors in valley's parameter order). The network
(tests/py/torch_ref.py's definition) runs in evaluation mode (BN with the running statistics of
state.f32), in float64. It takes the first candidate batch whose ReLU / max-pool decisions are all
>= 1e-5 from their kink (else the one with the largest margin), and writes, for the mean
cross-entropy over that batch L(w):
    hv.f64      H v for each of the V vectors (double backward: grad of <grad L, v>), (V, P)
    hess.f64    with --dense, the whole Hessian (P, P), row p = H e_p
    chosen.txt  "index margin"."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import torch_ref as R  # noqa: E402  (exits 3 without torch)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import argparse  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("family", choices=["mlp", "convnet", "preresnet", "resnet", "vgg"])
    ap.add_argument("--input", required=True)
    ap.add_argument("--out", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--candidates", type=int, default=1)
    ap.add_argument("--vectors", type=int, default=1)
    ap.add_argument("--dense", action="store_true")
    ap.add_argument("--widths", default="")
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--width-factor", type=float, default=1.0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    c, h, w = (int(v) for v in a.input.split("x"))
    if a.family == "mlp":
        model = R.MLP(c * h * w, [int(v) for v in a.widths.split(",") if v], a.out)
    elif a.family == "convnet":
        model = R.ConvNet(c, h, w, a.out)
    elif a.family == "preresnet":
        model = R.PreResNet(a.depth, c, a.out, a.width_factor)
    elif a.family == "vgg":
        model = R.VGG(a.depth, c, h, a.out, a.width_factor, True)
    else:
        model = R.ResNet(a.depth, c, a.out, a.width_factor, True)
    model = model.double().eval()
    d = a.dir
    manifest = R.read_manifest(os.path.join(d, "manifest.txt"))
    params = dict((k.replace(".", "_"), v) for k, v in model.named_parameters())
    buffers = dict((k.replace(".", "_"), v) for k, v in model.named_buffers() if not k.endswith("num_batches_tracked"))
    mp = [t for t in manifest if t[1] == "param"]
    ms = [t for t in manifest if t[1] == "state"]
    if sorted(t[0] for t in mp) != sorted(params) or sorted(t[0] for t in ms) != sorted(buffers):
        R.fail("tensor names differ: valley %s, torch %s" % ([t[0] for t in mp], list(params)))

    def load(name, dtype, count):
        arr = np.fromfile(os.path.join(d, name), dtype=dtype)
        if arr.size != count:
            R.fail(f"{name}: {arr.size} values, expected {count}")
        return arr

    nparams = sum(int(np.prod(t[2])) for t in mp)
    nstate = sum(int(np.prod(t[2])) for t in ms)
    w0, s0 = load("params.f32", "<f4", nparams), load("state.f32", "<f4", nstate)
    M, N, V = a.candidates, a.batch, a.vectors
    X = torch.from_numpy(load("x.f32", "<f4", M * N * c * h * w).reshape(M, N, c, h, w).astype(np.float64))
    Y = torch.from_numpy(load("y.i32", "<i4", M * N).astype(np.int64).reshape(M, N))
    vecs = load("v.f32", "<f4", V * nparams).reshape(V, nparams).astype(np.float64)
    with torch.no_grad():
        for table, entries, flat in ((params, mp, w0), (buffers, ms, s0)):
            for name, _, shape, off in entries:
                n = int(np.prod(shape))
                table[name].copy_(torch.from_numpy(flat[off:off + n].reshape(shape).astype(np.float64)))
    order = [params[t[0]] for t in mp]  # valley's parameter order
    offs = [t[3] for t in mp]

    def margin(b):
        R.Kinks.start()
        with torch.no_grad():
            model(X[b])
        return R.Kinks.stop()

    best, best_m = 0, -1.0
    for b in range(M):
        mb = margin(b)
        if mb > best_m:
            best, best_m = b, mb
        if mb >= 1e-5:
            best, best_m = b, mb
            break
    x, y = X[best], Y[best]
    loss = F.cross_entropy(model(x), y, reduction="mean")
    grads = torch.autograd.grad(loss, order, create_graph=True)

    def hvp(vflat):
        parts = [torch.from_numpy(vflat[o:o + p.numel()].reshape(p.shape)) for o, p in zip(offs, order)]
        dot = sum((g * u).sum() for g, u in zip(grads, parts))
        hv = torch.autograd.grad(dot, order, retain_graph=True)
        out = np.zeros(nparams)
        for o, p, t in zip(offs, order, hv):
            out[o:o + p.numel()] = t.detach().numpy().ravel()
        return out

    np.stack([hvp(vecs[i]) for i in range(V)]).astype("<f8").tofile(os.path.join(d, "hv.f64"))
    if a.dense:
        H = np.zeros((nparams, nparams))
        e = np.zeros(nparams)
        for p in range(nparams):
            e[p] = 1.0
            H[p] = hvp(e)
            e[p] = 0.0
        H.astype("<f8").tofile(os.path.join(d, "hess.f64"))
    with open(os.path.join(d, "chosen.txt"), "w") as f:
        f.write(f"{best} {best_m:.6e}\n")


if __name__ == "__main__":
    main()
