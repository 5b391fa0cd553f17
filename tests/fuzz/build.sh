#!/usr/bin/env bash
# tests/fuzz/build.sh — builds the libFuzzer targets into build/fuzz/:
#   fuzz_deck (deck parser), fuzz_idx (IDX reader), fuzz_csv (CSV reader), fuzz_cifar (CIFAR reader),
#   fuzz_onnx (the ONNX importer), fuzz_dataset (data_load), fuzz_checkpoint (ckpt_read_config, ckpt_read,
#   ckpt_read_swag, curve_read), fuzz_subspace (the subspace.nc reader of surface.c);
#   the last three from fuzz_netcdf.c with -DFZ_READER=1/2/3.
# The library sources are compiled with clang through mpicc (OMPI_CC=clang) with
# -fsanitize=fuzzer-no-link,address,undefined; each target links libFuzzer's main.
# Installs clang and libclang-rt-14-dev (libFuzzer and the sanitizer runtimes) with
# apt-get when they are missing; idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null | grep -q "install ok installed" || need+=(libclang-rt-14-dev)
if [[ ${#need[@]} -gt 0 ]]; then
    echo "fuzz/build.sh: installing ${need[*]}"
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
OUT=build/fuzz
mkdir -p "$OUT/obj"
NC_MPI=/usr/lib/x86_64-linux-gnu/netcdf/mpi
CFLAGS=(-g -O1 -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -fno-omit-frame-pointer
        -fsanitize=address,undefined -fno-sanitize-recover=undefined
        -Iinclude -I"$NC_MPI/include" -I/usr/include/x86_64-linux-gnu/openblas-pthread -I"$OUT"
        -DVALLEY_VERSION='"fuzz"')
read -r -a CAIRO_CFLAGS <<<"$(pkg-config --cflags cairo 2>/dev/null || true)"
read -r -a CAIRO_LIBS <<<"$(pkg-config --libs cairo 2>/dev/null || true)"
# --as-needed: only the shared libraries a target uses are loaded (a fuzz process is
# restarted after every crash: start-up time counts)
LDLIBS=(-Wl,--as-needed -L/usr/lib/x86_64-linux-gnu -lnetcdf_mpi -lscalapack-openmpi -llapacke
        -lopenblas -lz -lprotobuf-c "${CAIRO_LIBS[@]}" -lm)
echo '#define VALLEY_GIT_COMMIT "fuzz"' >"$OUT/gitversion.h"
export OMPI_CC=clang
objs=()
# ONNX's protobuf schema compiled to C from Debian's copy, as the Makefile does
mkdir -p "$OUT/gen"
if [[ ! -f $OUT/gen/onnx.pb-c.c || /usr/include/onnx/onnx.proto -nt $OUT/gen/onnx.pb-c.c ]]; then
    protoc-c --c_out="$OUT/gen" -I/usr/include/onnx /usr/include/onnx/onnx.proto
fi
if [[ ! -f $OUT/obj/onnx.pb-c.o || $OUT/gen/onnx.pb-c.c -nt $OUT/obj/onnx.pb-c.o ]]; then
    mpicc "${CFLAGS[@]}" -Wno-unused-parameter -fsanitize=fuzzer-no-link -c "$OUT/gen/onnx.pb-c.c" -o "$OUT/obj/onnx.pb-c.o"
fi
objs+=("$OUT/obj/onnx.pb-c.o")
for src in src/*.c; do
    [[ $src == src/main.c ]] && continue
    obj=$OUT/obj/$(basename "$src" .c).o
    if [[ ! -f $obj || $src -nt $obj || -n $(find include/valley src "$OUT/gen" -newer "$obj" -name '*.h' | head -1) ]]; then
        mpicc "${CFLAGS[@]}" "${CAIRO_CFLAGS[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
    fi
    objs+=("$obj")
done
rm -f "$OUT/libvalley_fuzz.a"
ar rcs "$OUT/libvalley_fuzz.a" "${objs[@]}"
for t in deck idx csv cifar onnx; do
    mpicc "${CFLAGS[@]}" "${CAIRO_CFLAGS[@]}" -fsanitize=fuzzer -o "$OUT/fuzz_$t" "tests/fuzz/fuzz_$t.c" \
        "$OUT/libvalley_fuzz.a" "${LDLIBS[@]}"
    echo "built $OUT/fuzz_$t"
done
# the NetCDF readers: one binary per reader from fuzz_netcdf.c
for t in dataset:1 checkpoint:2 subspace:3; do
    mpicc "${CFLAGS[@]}" "${CAIRO_CFLAGS[@]}" -Wno-sometimes-uninitialized -DFZ_READER="${t#*:}" -fsanitize=fuzzer \
        -o "$OUT/fuzz_${t%%:*}" tests/fuzz/fuzz_netcdf.c "$OUT/libvalley_fuzz.a" "${LDLIBS[@]}"
    echo "built $OUT/fuzz_${t%%:*}"
done
