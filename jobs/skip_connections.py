#!/usr/bin/python3
"""jobs/skip_connections.py OUT — the numbers and figures of jobs/skip_connections.sh.

Reads OUT/short/plane/surface.nc and OUT/noshort/plane/surface.nc (filter-normalised random
planes around each solution) and prints a markdown table: the training loss at the centre,
its range over the grid, the curvature at the centre (second differences of the training loss
along x and y, per squared unit of the filter-normalised directions), the fraction of the grid
whose training loss is below 1 nat and below the centre + 0.5 nat, and the test error at the
centre. Then `bin/valley plot` draws each plane's contours (OUT/NAME/plane/*.png)."""
import subprocess
import sys

import netCDF4
import numpy as np


def numbers(path):
    with netCDF4.Dataset(path) as f:
        x, y = f["x"][:], f["y"][:]
        v = f["train_loss"]
        L = np.asarray(v[:], dtype=np.float64)
        if v.dimensions == ("x", "y"):
            L = L.T  # (y, x)
        te = np.asarray(f["test_err"][:], dtype=np.float64)
        if f["test_err"].dimensions == ("x", "y"):
            te = te.T
        done = np.asarray(f["computed"][:])
    assert done.all(), f"{path}: not every grid point is computed"
    i, j = int(np.argmin(np.abs(y))), int(np.argmin(np.abs(x)))
    hx, hy = x[1] - x[0], y[1] - y[0]
    c = L[i, j]
    cx = (L[i, j + 1] - 2 * c + L[i, j - 1]) / hx ** 2
    cy = (L[i + 1, j] - 2 * c + L[i - 1, j]) / hy ** 2
    return dict(centre=c, lo=L.min(), hi=L.max(), curv=(cx + cy) / 2, below1=(L < 1.0).mean(),
                below_c=(L < c + 0.5).mean(), test_err=te[i, j], n=L.size)


def main():
    out = sys.argv[1]
    rows = []
    for name, label in (("short", "with shortcuts"), ("noshort", "without shortcuts")):
        r = numbers(f"{out}/{name}/plane/surface.nc")
        rows.append((label, r))
        subprocess.run(["bin/valley", "plot", f"{out}/{name}/plane/surface.nc"], check=True,
                       stdout=subprocess.DEVNULL)
    print("| network | train loss at the centre | range over the plane | curvature at the centre | "
          "grid under 1 nat | grid under centre + 0.5 | test error at the centre |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, r in rows:
        print(f"| {label} | {r['centre']:.3f} | {r['lo']:.3f} – {r['hi']:.3f} | {r['curv']:.2f} | "
              f"{100 * r['below1']:.0f} % | {100 * r['below_c']:.0f} % | {r['test_err']:.3f} |")


if __name__ == "__main__":
    main()
