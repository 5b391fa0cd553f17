#!/usr/bin/env python3
"""PyTorch reference for `make bench`: the same loss-surface grid as valley's `surface`
(plane through three networks; per point: set the weights, BN refresh over the training
subset with the cumulative average of batch statistics when the network has BN, evaluate
train and test NLL/error), one thread. Prints grid points per second.
usage: torch_surface.py M1 M2 M3 DATA NTRAIN NTEST NX [convnet|mlp]"""
import sys, time
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from netCDF4 import Dataset

torch.set_num_threads(1)
m1, m2, m3, data, ntrain, ntest, nx = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
kind = sys.argv[8] if len(sys.argv) > 8 else "convnet"

class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1); self.bn1 = nn.BatchNorm2d(32, momentum=None)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1); self.bn2 = nn.BatchNorm2d(64, momentum=None)
        self.fc1 = nn.Linear(3136, 128); self.fc2 = nn.Linear(128, 10)
    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))

class MLP(nn.Module):  # valley's mlp 784-512-512-10 (parameter names fc1.., as in model.nc)
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 512); self.fc2 = nn.Linear(512, 512); self.fc3 = nn.Linear(512, 10)
    def forward(self, x):
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

net = ConvNet() if kind == "convnet" else MLP()
bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
names = [n for n, _ in net.named_parameters()]
def flat(path):
    d = Dataset(path)
    return np.concatenate([d[n.replace(".", "_")][:].ravel() for n in names]).astype(np.float64)
w0, w1, w2 = flat(m1), flat(m2), flat(m3)
e = w2 - w0; f = w1 - w0; v = f - (e @ f) / (e @ e) * e
ds = Dataset(data)
def split(name, n):
    x = ds[name + "_x"][:n].astype(np.float32) * np.float32(ds.pixel_scale)
    x = (x - np.float32(ds.pixel_mean)) / np.float32(ds.pixel_std)
    return torch.from_numpy(x.reshape(-1, 1, 28, 28)), torch.from_numpy(ds[name + "_y"][:n].astype(np.int64))
xtr, ytr = split("train", ntrain); xte, yte = split("test", ntest)
B = 128
def evaluate(x, y):
    loss = correct = 0.0
    with torch.no_grad():
        for i in range(0, len(x), B):
            o = net(x[i:i + B]); loss += F.cross_entropy(o, y[i:i + B], reduction="sum").item()
            correct += (o.argmax(1) == y[i:i + B]).sum().item()
    return loss / len(x), 1 - correct / len(x)
grid = np.linspace(-0.2, 1.2, nx)
t0 = time.perf_counter(); n = 0
for yy in grid:
    for xx in grid:
        w = torch.from_numpy((w0 + xx * e + yy * v).astype(np.float32))
        torch.nn.utils.vector_to_parameters(w, net.parameters())
        if bns:
            for m in bns: m.reset_running_stats()
            net.train()
            with torch.no_grad():
                for i in range(0, ntrain, B): net(xtr[i:i + B])
        net.eval(); evaluate(xtr, ytr); evaluate(xte, yte); n += 1
print(f"torch_surface_points_per_s {n / (time.perf_counter() - t0):.4f}")
