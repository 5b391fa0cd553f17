#!/usr/bin/env bash
# jobs/scaling/plot.sh SPEC.txt OUT.png: builds jobs/scaling/plot_lines (valley's figure
# code from build/opt/libvalley.a, cairo) when missing or stale, and draws SPEC.txt.
set -eu
cd "$(dirname "$0")/../.."
B=${BUILD:-build/opt}
exe=$B/scaling/plot_lines
if [[ ! -x $exe || jobs/scaling/plot_lines.c -nt $exe || $B/libvalley.a -nt $exe ]]; then
    mkdir -p "$B/scaling"
    mpicc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -O2 -Iinclude \
        -I/usr/lib/x86_64-linux-gnu/netcdf/mpi/include -I/usr/include/x86_64-linux-gnu/openblas-pthread \
        -o "$exe" jobs/scaling/plot_lines.c "$B/libvalley.a" \
        -lnetcdf_mpi -lscalapack-openmpi -llapacke -lopenblas -lz -lcairo -lm
fi
"$exe" "$1" "$2"
