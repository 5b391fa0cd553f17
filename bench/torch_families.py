#!/usr/bin/env python3
"""PyTorch reference throughput of the network families for `make bench` (bench_families.c):
the same networks (tests/py/torch_ref.py's definitions, written from the reference codes),
batch 128, 32x32x3 and 28x28x1 random inputs, on the thread count given. Training = forward,
backward, SGD step; eval = model.eval() forward under no_grad; refresh = a train-mode forward
under no_grad (what a BN refresh pass costs). Usage: torch_families.py THREADS SECONDS [NAME...]"""
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
clock = time.process_time if os.environ.get('VALLEY_BENCH_CLOCK') == 'cpu' else time.perf_counter
torch.manual_seed(1)

NETS = {
    "resnet20": lambda c, h: R.ResNet(20, c, 10),
    "resnet56": lambda c, h: R.ResNet(56, c, 10),
    "preresnet20": lambda c, h: R.PreResNet(20, c, 10),
    "vgg16w4": lambda c, h: R.VGG(16, c, h, 10, 0.25, True),
    "wrn16_4": lambda c, h: R.WideResNet(16, 4, c, 10),
}


def run(fn, limit):
    it, t0 = 0, clock()
    while True:
        fn()
        it += 1
        t = clock() - t0
        if t > limit and it >= 2:
            return it * 128 / t


for name, make in NETS.items():
    if only and name not in only:
        continue
    for c, h in ((3, 32), (1, 28)):
        model = make(c, h)
        key = f"torch_{name}_{c}x{h}x{h}"
        x = torch.randn(128, c, h, h)
        y = torch.arange(128) % 10
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        model.train()

        def step():
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        step()
        print(f"{key}_train_samples_per_s {run(step, seconds):.1f}", flush=True)
        model.eval()
        with torch.no_grad():
            print(f"{key}_eval_samples_per_s {run(lambda: model(x), seconds / 2):.1f}", flush=True)
            model.train()
            print(f"{key}_refresh_samples_per_s {run(lambda: model(x), seconds / 2):.1f}", flush=True)
print(f"torch_version {torch.__version__}")
