#!/usr/bin/env python3
"""Stitches the row blocks of a surface job array into one surface.nc (jobs/surface_sweep.sh).

    surface_merge.py RUN_DIR BLOCKS NX NY

Block k (RUN_DIR/blocks/block_k/surface.nc) holds rows floor(k*NY/B) .. floor((k+1)*NY/B)-1
of the full NX x NY grid. Writes RUN_DIR/surface.nc (via a temporary name) with every
(y, x) variable of the blocks (train_loss, ..., computed), the points of an existing
RUN_DIR/surface.nc of the same grid kept, missing blocks left as not computed. Only what
`valley surface` needs to recognise the computed points is written (dimensions x, y,
the (y, x) variables with their _FillValue, the global surface_basis); the valley run
that follows on the full grid writes the final file. Exit status 4 on failure.
"""
import os
import sys

import netCDF4
import numpy as np


def main():
    run, blocks, nx, ny = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    out = os.path.join(run, "surface.nc")
    fields, basis, found = {}, None, 0
    fills = {}

    def take(path, row0):
        nonlocal basis
        with netCDF4.Dataset(path) as f:
            f.set_auto_mask(False)
            if len(f.dimensions["x"]) != nx:
                raise SystemExit(f"{path}: {len(f.dimensions['x'])} columns, the grid has {nx}")
            rows = len(f.dimensions["y"])
            b = f.getncattr("surface_basis")
            if basis is not None and b != basis:
                raise SystemExit(f"{path}: basis {b}, other blocks {basis}")
            basis = b
            done = f.variables["computed"][:] != 0
            for name, v in f.variables.items():
                if v.dimensions != ("y", "x"):
                    continue
                if name not in fields:
                    fill = v.getncattr("_FillValue") if "_FillValue" in v.ncattrs() else None
                    fills[name] = (v.dtype, fill, dict((a, v.getncattr(a)) for a in ("units", "long_name") if a in v.ncattrs()))
                    init = 0 if name == "computed" else (fill if fill is not None else np.nan)
                    fields[name] = np.full((ny, nx), init, dtype=v.dtype)
                data = v[:]
                dst = fields[name][row0:row0 + rows]
                dst[done] = data[done]
            return rows

    if os.path.exists(out):  # an earlier merge or partial sweep of the same grid
        try:
            with netCDF4.Dataset(out) as f:
                same = len(f.dimensions["x"]) == nx and len(f.dimensions["y"]) == ny
            if same:
                take(out, 0)
        except (OSError, KeyError) as e:
            print(f"surface_merge: ignoring {out}: {e}")
    for k in range(blocks):
        a, b = k * ny // blocks, (k + 1) * ny // blocks - 1
        path = os.path.join(run, "blocks", f"block_{k}", "surface.nc")
        if not os.path.exists(path):
            print(f"surface_merge: {path} missing: rows {a}..{b} left to the final valley run")
            continue
        rows = take(path, a)
        if rows != b - a + 1:
            raise SystemExit(f"{path}: {rows} rows, block {k} of {blocks} has {b - a + 1}")
        found += 1
    if not fields:
        print("surface_merge: no block found: the final valley run computes the whole grid")
        return 0
    tmp = out + ".merge.tmp"
    with netCDF4.Dataset(tmp, "w") as f:
        f.createDimension("x", nx)
        f.createDimension("y", ny)
        f.setncattr("surface_basis", basis)
        f.setncattr("title", "valley surface: blocks of a job array, merged (surface_merge.py)")
        for name, arr in fields.items():
            dtype, fill, atts = fills[name]
            v = f.createVariable(name, dtype, ("y", "x"), fill_value=fill if fill is not None else False)
            v.set_auto_mask(False)
            for a, val in atts.items():
                v.setncattr(a, val)
            v[:] = arr
    os.replace(tmp, out)
    done = int((fields["computed"] != 0).sum()) if "computed" in fields else -1
    print(f"surface_merge: {found} of {blocks} block(s) -> {out}: {done} of {nx * ny} points computed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit as e:
        if isinstance(e.code, str):
            print("surface_merge: " + e.code, file=sys.stderr)
            sys.exit(4)
        raise
