#!/usr/bin/env python3
"""nc_tree_compare.py -- compare every NetCDF file of two run directories, bit for bit.

usage: nc_tree_compare.py REF OUT [--exclude [FILE:]VAR ...] [--skip-dir NAME ...]

Every file under a final name (*.nc without ".tmp." in its name) in REF must exist in OUT
under the same relative path, and the other way round; each pair is compared with
nc_compare.py's exact comparison (every variable's bytes and attributes). --exclude VAR
skips a variable in every file, FILE:VAR only in files named FILE (e.g. history.nc:time).
--skip-dir NAME leaves out every directory of that name (e.g. checkpoints).

Prints one line per problem and a summary; exit status 0 when the trees agree, 1 when
they differ, 2 on a usage error. One process for the whole tree (the campaign compares
dozens of files per trial).
"""
import argparse
import contextlib
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nc_compare  # noqa: E402


def final_files(root, skip_dirs):
    out = set()
    for d, dirs, names in os.walk(root):
        dirs[:] = [x for x in dirs if x not in skip_dirs]
        for n in names:
            if n.endswith(".nc") and ".tmp." not in n:
                out.add(os.path.relpath(os.path.join(d, n), root))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description="compare every NetCDF file of two directories")
    p.add_argument("ref")
    p.add_argument("out")
    p.add_argument("--exclude", action="append", default=[], metavar="[FILE:]VAR")
    p.add_argument("--skip-dir", action="append", default=[], metavar="NAME")
    args = p.parse_args(argv)
    if not os.path.isdir(args.ref) or not os.path.isdir(args.out):
        print("nc_tree_compare: both arguments must be directories", file=sys.stderr)
        return 2
    a, b = final_files(args.ref, args.skip_dir), final_files(args.out, args.skip_dir)
    problems = [f"{f}: only in {args.ref}" for f in sorted(a - b)]
    problems += [f"{f}: only in {args.out}" for f in sorted(b - a)]
    for f in sorted(a & b):
        opts = []
        for e in args.exclude:
            fname, _, var = e.rpartition(":")
            if not fname or fname == os.path.basename(f):
                opts += ["--exclude", var]
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            st = nc_compare.main([os.path.join(args.ref, f), os.path.join(args.out, f), *opts])
        if st != 0:
            lines = buf.getvalue().splitlines()
            detail = "; ".join(x for x in lines if not x.startswith("nc_compare:"))
            problems.append(f"{f}: differs ({detail or buf.getvalue().strip()})"[:400])
    for line in problems:
        print(line)
    print(f"nc_tree_compare: {len(a & b)} file(s) compared, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
