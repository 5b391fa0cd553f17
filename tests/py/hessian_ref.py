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
    R.case_args(ap, ["mlp", "convnet", "preresnet", "resnet", "vgg"])
    ap.add_argument("--vectors", type=int, default=1)
    ap.add_argument("--dense", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model, shape = R.case_model(a)
    model = model.double().eval()
    d = a.dir
    M, N, V = a.candidates, a.batch, a.vectors
    mp, params, nparams, X, Y = R.case_load(d, model, M, N, shape, np.float64)
    vecs = np.fromfile(os.path.join(d, "v.f32"), dtype="<f4")
    if vecs.size != V * nparams:
        R.fail(f"v.f32: {vecs.size} values, expected {V * nparams}")
    vecs = vecs.reshape(V, nparams).astype(np.float64)
    order = [params[t[0]] for t in mp]  # valley's parameter order
    offs = [t[3] for t in mp]

    def margin(b):
        R.Kinks.start()
        with torch.no_grad():
            model(X[b])
        return R.Kinks.stop()

    best, best_m = R.pick_batch(M, margin)
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
