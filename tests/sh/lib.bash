# tests/sh/lib.bash — the common start of the shell tests (sourced, not run: the runner
# only runs *.sh). test_setup NAME: run from the repository root with the runner's
# environment (or defaults when a test is run by hand), a scratch directory $dir removed
# on exit, fail/err helpers, and the Fashion-MNIST dataset prepared if missing.
test_setup() {
    name=$1
    cd "$(dirname "${BASH_SOURCE[1]}")/../.." || exit 1
    VALLEY=${VALLEY:-$PWD/bin/valley}
    PYTHON=${PYTHON:-/usr/bin/python3}
    MPIRUN=${MPIRUN:-mpirun --oversubscribe}
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
    dir=$(mktemp -d "${VALLEY_TEST_TMP:-/tmp}/$name.XXXXXX")
    trap 'rm -rf "$dir"' EXIT
    errors=0
    [[ -x $VALLEY ]] || fail "$VALLEY not found (build first: make all)"
    if [[ ! -f input/data/fashion-mnist.nc ]]; then
        "$VALLEY" prepare fashion-mnist >"$dir/prepare.log" 2>&1 ||
            { cat "$dir/prepare.log"; fail "valley prepare fashion-mnist failed"; }
    fi
}
fail() { echo "$name: FAIL: $*"; exit 1; }
err() { echo "$name: FAIL: $*"; errors=$((errors + 1)); }
