#!/usr/bin/env python3
"""PyTorch reference throughput for `make bench`: the same mlp and convnet as
valley's (INTERFACE.md), batch 128, 28x28 inputs, on the thread count given."""
import sys, time
import os
import torch
import torch.nn as nn
import torch.nn.functional as F

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
torch.set_num_threads(threads)
# VALLEY_BENCH_CLOCK=cpu: rates per second of this process's CPU time (a loaded machine)
clock = time.process_time if os.environ.get('VALLEY_BENCH_CLOCK') == 'cpu' else time.perf_counter
torch.manual_seed(1)

class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1); self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1); self.bn2 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(3136, 128); self.fc2 = nn.Linear(128, 10)
    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))

def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))

def bench(name, model, B=128):
    x = torch.randn(B, 1, 28, 28); y = torch.arange(B) % 10
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    for _ in range(3):
        opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step()
    it, t0 = 0, clock()
    while True:
        opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step(); it += 1
        t = clock() - t0
        if t > seconds and it >= 3: break
    print(f"torch_{name}_train_samples_per_s {it * B / t:.1f}")
    model.eval(); it, t0 = 0, clock()
    with torch.no_grad():
        while True:
            model(x); it += 1
            t = clock() - t0
            if t > seconds / 2 and it >= 3: break
    print(f"torch_{name}_eval_samples_per_s {it * B / t:.1f}")

bench("mlp", mlp())
bench("convnet", ConvNet())
print(f"torch_version {torch.__version__} mkldnn {torch.backends.mkldnn.is_available()}")
