#!/usr/bin/env python3
"""K-FAC factors of a network in PyTorch, for tests/unit/test_laplace.c.

Usage: kfac_ref.py DIR FAMILY --input CxHxW --out K --batch N --candidates M [model options]
DIR holds manifest.txt, params.f32, state.f32 (as test_torch.c writes them), x.f32 (M candidate
batches of N inputs) and y.i32. The network (tests/py/torch_ref.py's definition) in train mode
takes the first candidate batch whose ReLU / max-pool decisions are all >= 1e-5 from their kink in
float64 (else the one with the largest margin), and for every Conv2d and Linear module records
its input (forward pre-hook) and the gradient of the summed cross-entropy with respect to its
output (full backward hook). From them, in float64:
    A = sum over samples and output locations of a a^T, a = the input patch (F.unfold, zero
        padding included), then 1 when the module has a bias;
    G = sum of g g^T, g = the output gradient at that location.
Writes A_<weight name>.f64, G_<weight name>.f64 (row-major) and chosen.txt ("index margin")."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import torch_ref as R  # noqa: E402  (exits 3 without torch)
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import argparse  # noqa: E402
import copy  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    R.case_args(ap, ["mlp", "convnet", "preresnet", "resnet"])
    a = ap.parse_args()
    torch.set_num_threads(1)
    model, shape = R.case_model(a)
    d = a.dir
    M, N = a.candidates, a.batch
    _, _, _, X, Y = R.case_load(d, model, M, N, shape)

    def margin(b):
        m64 = copy.deepcopy(model).double().train()
        R.Kinks.start()
        with torch.no_grad():
            m64(X[b].double())
        return R.Kinks.stop()

    best, best_m = R.pick_batch(M, margin)

    names = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            names[mod] = name.replace(".", "_") + "_weight"
    seen_in, seen_gy = {}, {}
    for mod in names:
        mod.register_forward_pre_hook(lambda m, i: seen_in.__setitem__(m, i[0].detach()))
        mod.register_full_backward_hook(lambda m, gi, go: seen_gy.__setitem__(m, go[0].detach()))
    model.train()
    out = model(X[best].clone().requires_grad_(True))
    F.cross_entropy(out, Y[best], reduction="sum").backward()
    for mod, wname in names.items():
        x, gy = seen_in[mod].double(), seen_gy[mod].double()
        if isinstance(mod, nn.Conv2d):
            cols = F.unfold(x, mod.kernel_size, padding=mod.padding, stride=mod.stride)  # (N, K, L)
            cols = cols.permute(0, 2, 1).reshape(-1, cols.shape[1])
            g = gy.permute(0, 2, 3, 1).reshape(-1, gy.shape[1])
        else:
            cols, g = x.reshape(x.shape[0], -1), gy
        if mod.bias is not None:
            cols = torch.cat([cols, torch.ones_like(cols[:, :1])], dim=1)
        (cols.t() @ cols).numpy().astype("<f8").tofile(os.path.join(d, f"A_{wname}.f64"))
        (g.t() @ g).numpy().astype("<f8").tofile(os.path.join(d, f"G_{wname}.f64"))
    with open(os.path.join(d, "chosen.txt"), "w") as f:
        f.write(f"{best} {best_m:.6e}\n")


if __name__ == "__main__":
    main()
