#!/usr/bin/env bash
# Simulated scaling of valley's communication skeleton with SimGrid SMPI (make sim).
#   jobs/scaling/sim/run.sh         ranks 1 4 16 64 256 1024 (about 10-15 min on 2 busy cores)
# Environment: SIM_RANKS, SIM_OUT (output/scaling/sim), SIM_PLATFORMS ("ib eth").
# Installs libsimgrid-dev and simgrid when missing (smpicc, smpirun). Builds
# skeleton.c with smpicc; runs it on the platforms fattree_ib.xml (100 Gb/s, 1 us) and,
# for training, fattree_eth.xml (10 Gb/s, 25 us). The compute phases replay durations
# measured here by valley's own timers: the training time per sample and the surface
# time per grid point are read from jobs/scaling/run.sh's runs when they exist
# (output/scaling/runs/*/timers.txt), else the values measured when doc/scaling.md
# was written are used. PCA's local BLAS kernels run for real a few times
# (SMPI_SAMPLE_GLOBAL) and are replayed on the other ranks.
# Writes SIM_OUT/sim.tsv, SIM_OUT/simulated.md and doc/scaling_simulated.png.
set -u
cd "$(dirname "$0")/../../.."
OUT=${SIM_OUT:-output/scaling/sim}
RANKS=${SIM_RANKS:-1 4 16 64 256 1024}
PLATFORMS=${SIM_PLATFORMS:-ib eth}
MEAS=${SCALING_OUT:-output/scaling}/runs
mkdir -p "$OUT"
if ! command -v smpicc >/dev/null || ! command -v smpirun >/dev/null; then
    SUDO=""; [[ $(id -u) = 0 ]] || SUDO=sudo
    $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        libsimgrid-dev simgrid || exit 1
fi
B=${BUILD:-build/opt}/sim
mkdir -p "$B"
if [[ ! -x $B/skeleton || jobs/scaling/sim/skeleton.c -nt $B/skeleton ]]; then
    smpicc -O2 -Wall -Wextra -I/usr/include/x86_64-linux-gnu/openblas-pthread -o "$B/skeleton" \
        jobs/scaling/sim/skeleton.c -lopenblas -llapacke || exit 1
fi
for i in $(seq 0 1023); do echo "node-$i"; done >"$B/hosts.txt"
export OPENBLAS_NUM_THREADS=1

# Compute rates measured on this machine (valley's timers, 1 rank).
# t_sample: compute seconds per training sample (forward + backward + SGD step of the
# mlp 784-512-512-10 at 64 samples per rank); t_point: seconds per surface grid point
# for one rank (BN-free mlp: evaluation of 4096 training + 1000 test samples).
t_sample=6.1e-5 t_point=0.085
if [[ -s $MEAS/train_weak_1/timers.txt ]]; then
    t_sample=$(awk '$1 == "compute" { printf "%.4g", $7 / (2 * 4096) }' "$MEAS/train_weak_1/timers.txt")
fi
if [[ -s $MEAS/surface_strong_1/timers.txt ]]; then # (wall - start-up) / 16 points; start-up from the run's log
    t_point=$(grep -o '([0-9.]* s/point)' "$MEAS/surface_strong_1.log" | tail -1 | tr -d '(' | awk '{ print $1 }')
    [[ -n $t_point ]] || t_point=0.085
fi
echo "compute rates: t_sample $t_sample s, t_point $t_point s"

res=$OUT/sim.tsv
# SIM_ONLY=REGEX: rerun only the studies matching it, keeping the other lines of sim.tsv
if [[ -n ${SIM_ONLY:-} && -s $res ]]; then
    awk -F'\t' -v re="$SIM_ONLY" 'NR == 1 || $1 !~ re' "$res" >"$res.keep" && mv "$res.keep" "$res"
else
    echo -e "study\tplatform\tranks\ttotal\tcompute\tcomm\tparams" >"$res"
fi
sim() { # STUDY PLATFORM P SKELETON-ARGS...
    local study=$1 plat=$2 p=$3; shift 3
    [[ -n ${SIM_ONLY:-} && ! $study =~ $SIM_ONLY ]] && return
    local line t0=$SECONDS
    # shared-malloc blocks of 128 MiB: fewer mappings than vm.max_map_count at 1024 ranks
    line=$(smpirun -np "$p" -platform "jobs/scaling/sim/fattree_$plat.xml" -hostfile "$B/hosts.txt" \
        --cfg=smpi/host-speed:1Gf --cfg=smpi/coll-selector:ompi --cfg=smpi/display-timing:no \
        --cfg=smpi/shared-malloc-blocksize:134217728 \
        --log=root.thres:critical "$B/skeleton" "$@" 2>"$OUT/last.err" | grep -E "^(train|surface|pca) ")
    if [[ -z $line ]]; then echo "FAILED: $study $plat P=$p"; tail -5 "$OUT/last.err"; return; fi
    awk -v s="$study" -v pl="$plat" '{ printf "%s\t%s\t%d\t%s\t%s\t%s\t", s, pl, $2, $4, $6, $8;
        for (i = 9; i <= NF; i++) printf "%s%s", $i, (i < NF ? " " : "\n") }' <<<"$line" >>"$res"
    printf '%-14s %-4s P=%-5d simulated %10.6fs  (%ds)\n' "$study" "$plat" "$p" "$(awk '{print $4}' <<<"$line")" $((SECONDS - t0))
}
D=669706 # mlp 784-512-512-10
for p in $RANKS; do
    for plat in $PLATFORMS; do
        sim train_strong "$plat" "$p" train $D $((8192 / p > 0 ? 8192 / p : 1)) 2 "$t_sample"
        sim train_weak "$plat" "$p" train $D 64 2 "$t_sample"
    done
    sim surface_strong ib "$p" surface 4096 1 4 "$t_point"
    sim surface_weak ib "$p" surface $((16 * p)) 1 4 "$t_point"
    sim pca_strong ib "$p" pca 16777216 32 10
    sim pca_weak ib "$p" pca $((262144 * p)) 32 10
done
/usr/bin/python3 jobs/scaling/sim/report_sim.py "$res" "$OUT/simulated.md" "$OUT/simulated_plot.txt" &&
    jobs/scaling/plot.sh "$OUT/simulated_plot.txt" doc/scaling_simulated.png
echo "wrote $res, $OUT/simulated.md, doc/scaling_simulated.png"
