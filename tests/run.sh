#!/usr/bin/env bash
# valley test runner: runs every unit-test binary and every tests/sh/*.sh script.
# Each test passes by exiting 0. Prints one line per test and a closing
# "N passed, N failed"; exits non-zero when any test failed.
#   tests/run.sh [PATTERN]   run only tests whose name contains PATTERN
set -u
cd "$(dirname "$0")/.."
export BUILD=${BUILD:-build/opt}
export VALLEY=${VALLEY:-$PWD/bin/valley}
export PYTHON=/usr/bin/python3           # Debian's python: python3-torch, python3-netcdf4
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export MPIRUN="mpirun --oversubscribe"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
export VALLEY_TEST_TMP=$(mktemp -d /tmp/valley-tests.XXXXXX)
trap 'rm -rf "$VALLEY_TEST_TMP"' EXIT
pattern=${1:-}
passed=0; failed=0; failed_names=()
run_one() { # name, command...
    local name=$1; shift
    [[ -n $pattern && $name != *"$pattern"* ]] && return
    local log="$VALLEY_TEST_TMP/$name.log" t0=$SECONDS
    if "$@" >"$log" 2>&1; then
        passed=$((passed + 1)); printf 'PASS %-40s %4ds\n' "$name" $((SECONDS - t0))
    else
        failed=$((failed + 1)); failed_names+=("$name")
        printf 'FAIL %-40s %4ds\n' "$name" $((SECONDS - t0))
        sed 's/^/    | /' "$log" | tail -40
    fi
}
for t in "$BUILD"/tests/test_*; do
    [[ -x $t ]] || continue
    run_one "$(basename "$t")" "$t"
done
# The kernel and parity tests again on every lower kernel path this CPU can run (one binary
# carries the AVX-512, AVX2 and portable kernels; VALLEY_ISA caps the path: include/valley/cpu.h).
paths=$("$VALLEY" --version | sed -n 's/^kernels: \([a-z0-9]*\) (this CPU can run: \([a-z0-9 ]*\);.*/\2/p')
best=${paths%% *}
[[ -n $paths ]] || { failed=$((failed + 1)); failed_names+=("kernel-paths"); echo "FAIL kernel-paths: $VALLEY --version names none"; }
for isa in $paths; do
    [[ $isa == "$best" ]] && continue
    for t in test_conv3 test_wino test_grad test_bnupdate test_dropout test_torch test_hvp; do
        [[ -x $BUILD/tests/$t ]] && run_one "$t[$isa]" env VALLEY_ISA=$isa "$BUILD/tests/$t"
    done
done
for t in tests/sh/*.sh; do
    [[ -f $t ]] || continue
    run_one "$(basename "$t" .sh)" bash "$t"
done
[[ $failed -gt 0 ]] && printf 'failed: %s\n' "${failed_names[*]}"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 && $passed -gt 0 ]]
