#!/usr/bin/env bash
# make bench: valley's throughput beside references measured in the same command
# (PyTorch on the same thread count, OpenBLAS sgemm on the same machine), so the
# ratios survive a noisy machine. Prints a table; see doc/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/opt}
SECONDS_PER=${BENCH_SECONDS:-3}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "== numerical core, 1 thread, batch 128, 28x28 inputs (${SECONDS_PER}s per measurement)"
"$BUILD/bench/bench_core" "$SECONDS_PER" > "$tmp/valley.txt"
/usr/bin/python3 bench/torch_bench.py 1 "$SECONDS_PER" > "$tmp/torch.txt"
val() { awk -v k="$1" '$1 == k {print $2}' "$tmp"/valley.txt "$tmp"/torch.txt; }
printf '%-28s %12s %12s %8s\n' "measurement" "valley" "pytorch" "ratio"
for m in mlp convnet; do
  for p in train eval; do
    v=$(val ${m}_${p}_samples_per_s); t=$(val torch_${m}_${p}_samples_per_s)
    printf '%-28s %12.0f %12.0f %7.2fx\n' "$m $p samples/s" "$v" "$t" "$(echo "$v / $t" | bc -l)"
  done
done
peak=$(val sgemm_peak_gflops)
echo
echo "== fraction of OpenBLAS sgemm peak (1024^3 sgemm: ${peak} GFLOP/s)"
for m in mlp convnet; do
  f=$(val ${m}_fwd_mflop_per_sample)
  for p in train eval; do
    v=$(val ${m}_${p}_samples_per_s); mult=1; [[ $p == train ]] && mult=3
    g=$(echo "$v * $f * $mult / 1000" | bc -l)
    printf '%-28s %8.1f GFLOP/s  %5.1f%% of peak\n' "$m $p" "$g" "$(echo "100 * $g / $peak" | bc -l)"
  done
done
for k in sgemm_conv2_fwd_gflops sgemm_conv2_wgrad_gflops sgemm_conv2_dgrad_gflops sgemm_mlp_fc2_gflops; do
  printf '%-28s %8.1f GFLOP/s  %5.1f%% of peak\n' "${k%_gflops}" "$(val $k)" "$(echo "100 * $(val $k) / $peak" | bc -l)"
done
echo "($(awk '$1=="torch_version"{print "pytorch", $2, "mkldnn", $4}' "$tmp/torch.txt"))"
