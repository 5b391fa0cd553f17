#!/usr/bin/env bash
# Classification and regression metrics against an independent NumPy reference
# (tests/py/metrics_ref.py) on seeded random data, at 1e-12 relative.
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/opt}
PYTHON=${PYTHON:-/usr/bin/python3}
export PYTHON
dir=$(mktemp -d "${VALLEY_TEST_TMP:-/tmp}/metrics_numpy.XXXXXX")
trap 'rm -rf "$dir"' EXIT
timeout 120 "$BUILD/tests/test_metrics" --numpy tests/py/metrics_ref.py "$dir"
