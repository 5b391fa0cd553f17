#!/usr/bin/env python3
"""nc_compare.py -- compare every variable of two NetCDF files.

usage: nc_compare.py A.nc B.nc [--tol T] [--atol T] [--sharp S --max-flipped F]
                     [--exclude VAR ...] [--only VAR ...]
                     [--global-attrs] [--ignore-attr NAME ...] [--verbose]

Both files must hold the same variables (in every group), with the same type and
shape. Variable data are compared:
  - exactly by default: the raw bytes must be identical (so -0.0 != +0.0 and two NaNs
    with the same bit pattern are equal); this is the "bit for bit" test;
  - with --tol T: floating-point variables pass when
        max |a - b| / max(max |a|, tiny) <= T
    i.e. the largest difference relative to the tensor's largest magnitude; NaNs must
    sit at the same positions. Integer, string and char variables stay exact.
  - with --atol T: floating-point variables pass when max |a - b| <= T.
  - with --sharp S --max-flipped F (with --tol): besides --tol for every element, the
    floating-point elements of all compared variables whose difference relative to their
    variable's max |value| exceeds S may make up at most a fraction F of them. Two runs
    that round differently flip a few ReLU / max-pool decisions (kinks), which moves a few
    gradient entries by up to ~1e-3 while the rest agree to ~1e-6: --tol alone would have
    to be loose enough for the flipped entries, this keeps the rest sharp.
Variable attributes are compared exactly too (--no-var-attrs to skip). Global
attributes are ignored unless --global-attrs is given; even then `created` (and
every --ignore-attr NAME) is skipped.

Prints one line per variable that differs (every variable with --verbose), with the
largest absolute and relative difference, and a summary line. Exit status: 0 the
files agree, 1 they differ, 2 usage error or a file cannot be read.
"""
import argparse
import sys

import numpy as np

try:
    import netCDF4
except ImportError:  # pragma: no cover - Debian's python3-netcdf4 is a test dependency
    print("nc_compare: python3-netcdf4 is not installed", file=sys.stderr)
    sys.exit(2)


def attrs_of(obj, skip=()):
    out = {}
    for name in obj.ncattrs():
        if name in skip:
            continue
        out[name] = obj.getncattr(name)
    return out


def short(v, n=120):
    r = repr(v)
    return r if len(r) <= n else r[:n] + "..."


def same_value(a, b):
    """Exact equality for attribute values (strings, scalars or arrays)."""
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def read_raw(var):
    var.set_auto_maskandscale(False)
    data = var[...]
    if isinstance(data, np.ma.MaskedArray):  # should not happen with auto mask off
        data = data.filled()
    return np.asarray(data)


def compare_var(name, va, vb, args, problems, lines):
    if va.dtype != vb.dtype:
        problems.append(f"{name}: type {va.dtype} vs {vb.dtype}")
        return
    if va.dimensions != vb.dimensions or va.shape != vb.shape:
        problems.append(f"{name}: shape {va.dimensions}{va.shape} vs {vb.dimensions}{vb.shape}")
        return
    if not args.no_var_attrs:
        aa, ab = attrs_of(va), attrs_of(vb)
        if set(aa) != set(ab):
            problems.append(f"{name}: attributes {sorted(aa)} vs {sorted(ab)}")
        for k in sorted(set(aa) & set(ab)):
            if not same_value(aa[k], ab[k]):
                problems.append(f"{name}:{k}: attribute {short(aa[k])} vs {short(ab[k])}")
    a, b = read_raw(va), read_raw(vb)
    if a.dtype.kind not in "fc" or (args.tol is None and args.atol is None):
        # exact: compare the bytes (object arrays, i.e. strings, by value)
        if a.dtype == object:
            equal = a.shape == b.shape and all(x == y for x, y in zip(a.ravel(), b.ravel()))
        else:
            equal = a.tobytes() == b.tobytes()
        detail = ""
        if not equal and a.dtype.kind in "fciu" and a.size:
            with np.errstate(invalid="ignore", over="ignore"):
                diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            diff = diff[np.isfinite(diff)]
            # elements whose bytes differ (so NaN == NaN with the same bits, -0.0 != 0.0)
            ab = np.ascontiguousarray(a).reshape(-1).view(np.uint8).reshape(a.size, -1)
            bb = np.ascontiguousarray(b).reshape(-1).view(np.uint8).reshape(b.size, -1)
            ndiff = int(np.count_nonzero(np.any(ab != bb, axis=1)))
            detail = f"max finite |diff| {diff.max() if diff.size else 0:.3e}, {ndiff} of {a.size} elements differ"
        if not equal:
            problems.append(f"{name}: not bit-identical ({detail})")
        elif args.verbose:
            lines.append(f"{name}: identical ({a.size} elements)")
        return
    na, nb = np.isnan(a), np.isnan(b)
    if not np.array_equal(na, nb):
        problems.append(f"{name}: NaN at different positions ({int(na.sum())} vs {int(nb.sum())})")
        return
    ok = ~na
    a64, b64 = a[ok].astype(np.float64), b[ok].astype(np.float64)
    if not np.array_equal(np.isinf(a64), np.isinf(b64)) or not np.array_equal(a64[np.isinf(a64)], b64[np.isinf(b64)]):
        problems.append(f"{name}: infinities differ")
        return
    fin = np.isfinite(a64)
    d = np.abs(a64[fin] - b64[fin])
    maxdiff = float(d.max()) if d.size else 0.0
    scale = float(np.abs(a64[fin]).max()) if d.size else 0.0
    if args.sharp is not None and d.size:
        flipped = int(np.count_nonzero(d > args.sharp * max(scale, np.finfo(np.float64).tiny)))
        args.flip_counts.append((name, flipped, int(d.size)))
    rel = maxdiff / max(scale, np.finfo(np.float64).tiny)
    if maxdiff == 0.0:
        rel = 0.0
    verdict = True
    if args.tol is not None and rel > args.tol:
        verdict = False
    if args.atol is not None and maxdiff > args.atol:
        verdict = False
    msg = f"{name}: max |diff| {maxdiff:.3e}, max |value| {scale:.3e}, relative {rel:.3e}"
    if not verdict:
        problems.append(msg + " -- over the tolerance")
    elif args.verbose:
        lines.append(msg)
    return rel


def walk(ga, gb, prefix, args, problems, lines, stats):
    va, vb = set(ga.variables), set(gb.variables)
    sel = lambda names: {n for n in names
                         if (not args.only or n in args.only) and n not in (args.exclude or [])}
    va, vb = sel(va), sel(vb)
    for n in sorted(va - vb):
        problems.append(f"{prefix}{n}: only in the first file")
    for n in sorted(vb - va):
        problems.append(f"{prefix}{n}: only in the second file")
    for n in sorted(va & vb):
        rel = compare_var(prefix + n, ga.variables[n], gb.variables[n], args, problems, lines)
        stats["nvars"] += 1
        if rel is not None and rel > stats["worst_rel"]:
            stats["worst_rel"], stats["worst_var"] = rel, prefix + n
    ka, kb = set(ga.groups), set(gb.groups)
    for n in sorted(ka ^ kb):
        problems.append(f"{prefix}{n}/: group only in one file")
    for n in sorted(ka & kb):
        walk(ga.groups[n], gb.groups[n], f"{prefix}{n}/", args, problems, lines, stats)


def main(argv=None):
    p = argparse.ArgumentParser(description="compare every variable of two NetCDF files")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--tol", type=float, help="max |diff| relative to the variable's max |value| (floats)")
    p.add_argument("--atol", type=float, help="max |diff| (floats)")
    p.add_argument("--exclude", action="append", metavar="VAR", help="skip this variable (repeatable)")
    p.add_argument("--only", action="append", metavar="VAR", help="compare only these variables (repeatable)")
    p.add_argument("--no-var-attrs", action="store_true", help="do not compare variable attributes")
    p.add_argument("--global-attrs", action="store_true", help="also compare global attributes (except created)")
    p.add_argument("--ignore-attr", action="append", default=[], metavar="NAME",
                   help="global attribute to skip with --global-attrs (repeatable)")
    p.add_argument("--sharp", type=float, help="relative difference beyond which an element counts as flipped")
    p.add_argument("--max-flipped", type=float, default=0.0,
                   help="largest fraction of all float elements allowed beyond --sharp (default 0)")
    p.add_argument("-v", "--verbose", action="store_true", help="one line for every variable")
    args = p.parse_args(argv)
    args.flip_counts = []
    if args.sharp is not None and args.tol is None:
        p.error("--sharp needs --tol (the bound every element must keep)")
    try:
        fa = netCDF4.Dataset(args.a)
        fb = netCDF4.Dataset(args.b)
    except OSError as e:
        print(f"nc_compare: cannot read: {e}", file=sys.stderr)
        return 2
    problems, lines = [], []
    stats = {"nvars": 0, "worst_rel": 0.0, "worst_var": ""}
    with fa, fb:
        if args.global_attrs:
            skip = {"created", *args.ignore_attr}
            aa, ab = attrs_of(fa, skip), attrs_of(fb, skip)
            for k in sorted(set(aa) ^ set(ab)):
                problems.append(f"global attribute {k}: only in one file")
            for k in sorted(set(aa) & set(ab)):
                if not same_value(aa[k], ab[k]):
                    problems.append(f"global attribute {k}: {short(aa[k])} vs {short(ab[k])}")
        walk(fa, fb, "", args, problems, lines, stats)
        for v in args.only or []:
            if v not in fa.variables and v not in fb.variables:
                problems.append(f"{v}: in neither file")
    if args.sharp is not None:
        nflip = sum(c for _, c, _ in args.flip_counts)
        total = sum(n for _, _, n in args.flip_counts)
        frac = nflip / max(total, 1)
        where = ", ".join(f"{v} {c}" for v, c, _ in args.flip_counts if c)
        line = (f"elements beyond relative {args.sharp:g}: {nflip} of {total} ({frac:.2e}; "
                f"allowed {args.max_flipped:.2e}){': ' + where if where else ''}")
        (problems if frac > args.max_flipped else lines).append(line)
        if frac <= args.max_flipped:
            print(line)
    for line in lines:
        print(line)
    for line in problems:
        print(line)
    mode = ("exact" if args.tol is None and args.atol is None else
            " and ".join(x for x in (f"relative tol {args.tol:g}" if args.tol is not None else "",
                                     f"atol {args.atol:g}" if args.atol is not None else "") if x))
    if stats["nvars"] == 0 and not problems:
        print(f"nc_compare: no variables compared in {args.a} and {args.b}")
        return 1
    worst = (f"; worst relative difference {stats['worst_rel']:.3e} ({stats['worst_var']})"
             if args.tol is not None or args.atol is not None else "")
    if problems:
        print(f"nc_compare: {args.a} and {args.b} DIFFER ({len(problems)} problem(s), {mode}, "
              f"{stats['nvars']} variables{worst})")
        return 1
    print(f"nc_compare: {args.a} and {args.b} agree ({mode}, {stats['nvars']} variables{worst})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
