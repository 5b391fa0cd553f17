#!/usr/bin/env python3
"""PyTorch reference for bench_hvp.c: one gradient (eval-mode forward + backward of the mean
cross-entropy) and one Hessian-vector product (double backward: grad of <grad, v>, the way
PyHessian computes them), batch 128, random inputs, on the thread count given.
Usage: torch_hvp.py THREADS SECONDS [NAME...]; prints torch_NAME_grad_samples_per_s, torch_NAME_hvp_samples_per_s."""
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "py"))
import torch_ref as R  # noqa: E402

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
only = sys.argv[3:]
torch.set_num_threads(threads)
torch.manual_seed(1)
NETS = {
    "convnet": (lambda: R.ConvNet(1, 28, 28, 10), (1, 28, 28)),
    "resnet20": (lambda: R.ResNet(20, 3, 10), (3, 32, 32)),
    "preresnet20": (lambda: R.PreResNet(20, 3, 10), (3, 32, 32)),
}


def run(fn, limit):
    it, t0 = 0, time.perf_counter()
    while True:
        fn()
        it += 1
        t = time.perf_counter() - t0
        if t > limit and it >= 3:
            return it * 128 / t


for name, (make, shape) in NETS.items():
    if only and name not in only:
        continue
    model = make().eval()
    params = [p for p in model.parameters()]
    x = torch.randn(128, *shape)
    y = torch.arange(128) % 10
    v = [torch.randn_like(p) for p in params]

    def grad():
        loss = F.cross_entropy(model(x), y)
        torch.autograd.grad(loss, params)

    def hvp():
        loss = F.cross_entropy(model(x), y)
        g = torch.autograd.grad(loss, params, create_graph=True)
        dot = sum((a * b).sum() for a, b in zip(g, v))
        torch.autograd.grad(dot, params)

    grad()
    hvp()  # warm-up: the allocator's first requests outside the timing
    print(f"torch_{name}_grad_samples_per_s {run(grad, seconds):.2f}")
    print(f"torch_{name}_hvp_samples_per_s {run(hvp, seconds):.2f}", flush=True)
