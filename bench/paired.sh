#!/usr/bin/env bash
# bench/paired.sh [N]: the convnet's training and evaluation rates, valley (bench_core) and
# PyTorch (torch_bench.py) run alternately N times (default 3), one thread each; prints the
# best of each and their ratios. Paired runs keep a noisy machine's drift out of the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/opt}
make -s "$BUILD/bench/bench_core"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
bt=0; be=0; vt=0; ve=0
for _ in $(seq "${1:-3}"); do
  read -r t e < <(/usr/bin/python3 bench/torch_bench.py 1 2 | awk '/torch_convnet_train/{t=$2} /torch_convnet_eval/{e=$2} END{print t, e}')
  read -r a b < <("$BUILD/bench/bench_core" 2 convnet | awk '/convnet_train/{t=$2} /convnet_eval/{e=$2} END{print t, e}')
  bt=$(echo "if ($t > $bt) $t else $bt" | bc); be=$(echo "if ($e > $be) $e else $be" | bc)
  vt=$(echo "if ($a > $vt) $a else $vt" | bc); ve=$(echo "if ($b > $ve) $b else $ve" | bc)
done
echo "best of ${1:-3}: pytorch train $bt eval $be | valley train $vt eval $ve | ratio train $(echo "scale=2; $vt/$bt" | bc) eval $(echo "scale=2; $ve/$be" | bc)"
