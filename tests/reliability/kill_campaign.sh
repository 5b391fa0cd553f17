#!/usr/bin/env bash
# tests/reliability/kill_campaign.sh [N] — kill -9 campaign (issue 11; issue 20 item 8).
#
# N trials (default 20). Each trial starts one job of a random kind on 2-4 ranks and
# kill -9's one random rank at a random moment of the job's lifetime (in half of the
# trials: the moment a file is seen being written under its tmp name, i.e. inside a
# checkpoint / NetCDF write). The kinds (KILL_KINDS selects, default all six):
#   train    784-256-10 MLP, 12 epochs on 8192 images, a checkpoint every epoch
#   curve    a Bezier curve between two trained models, 10 epochs, a checkpoint every epoch
#   fge      4 cycles of 2 epochs from a trained model (snapshots at mid-cycle)
#   bma      SGD, ensemble, SWA, SWAG-Diag and SWAG averages (40 samples each) of a SWAG run
#   surface  a 20 x 20 random plane around a trained model, surface.nc rewritten every 0.05 s
#   run      `valley run` on a small deck with every stage (endpoints, evaluate, bma, fge,
#            curve, surface, pca, infer, simplex)
# Sizes: big enough that an uninterrupted job takes ~1.5-4 s here, so that most kills land
# in the computation rather than in MPI's start-up. Then it checks:
#   1. the job ends with a non-zero status within 60 s (no hang);
#   2. every file under a final name (no .tmp.) in the output tree is complete: it opens
#      with python3-netCDF4 and every variable reads (tmp files a killed writer leaves
#      are counted, not failures: they never carry a final name);
#   3. finishing the job IN THE SAME OUTPUT DIRECTORY gives a tree of NetCDF files
#      bit-identical (tests/py/nc_tree_compare.py: the same final files, each exactly
#      equal, history.nc's `time` and infer.nc's `chain_seconds` excepted) to an
#      uninterrupted run with the same rank count: train and curve resume from the newest
#      complete checkpoints/epoch_*.nc (--set train.resume=...; a plain rerun when there
#      is none), fge reruns with --set train.resume=auto (each chain resumes from its
#      checkpoints/preempt.nc when there is one; after kill -9 there is none), bma and
#      surface rerun (surface computes only the points its surface.nc lacks), `valley run`
#      reruns and must reuse the finished stages and redo the others (and write report.md).
# A job that finished before the kill landed is counted as such and its outputs are
# compared too. Prints one line per trial and a summary with a line per kind; exits 1 on
# any failure.
# Environment: KILL_SEED (random seed, default: time-based; printed), KILL_KINDS
# ("train curve fge bma surface run"), KILL_NP ("2 3 4"), VALLEY, PYTHON, MPIRUN, KEEP=1
# keeps the scratch dir.
set -u
cd "$(dirname "$0")/../.."
N=${1:-20}
VALLEY=${VALLEY:-$PWD/bin/valley}
PYTHON=${PYTHON:-/usr/bin/python3}
MPIRUN=${MPIRUN:-mpirun --oversubscribe}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
SEED=${KILL_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$SEED
ALL_KINDS="train curve fge bma surface run"
read -r -a KINDS <<<"${KILL_KINDS:-$ALL_KINDS}"
read -r -a NPS <<<"${KILL_NP:-2 3 4}"
[[ ${#KINDS[@]} -gt 0 ]] || { echo "kill_campaign: KILL_KINDS is empty"; exit 1; }
for k in "${KINDS[@]}"; do
    [[ " $ALL_KINDS " == *" $k "* ]] ||
        { echo "kill_campaign: unknown kind '$k' (KILL_KINDS: $ALL_KINDS)"; exit 1; }
done
[[ -x $VALLEY ]] || { echo "kill_campaign: $VALLEY not built (make all)"; exit 1; }
if [[ ! -f input/data/fashion-mnist.nc ]]; then
    "$VALLEY" prepare fashion-mnist >/dev/null 2>&1 ||
        { echo "kill_campaign: valley prepare fashion-mnist failed"; exit 1; }
fi
dir=$(mktemp -d "${VALLEY_TEST_TMP:-/tmp}/kill_campaign.XXXXXX")
bg=""
cleanup() {
    if [[ -n $bg ]]; then kill -KILL $(pgrep -P "$bg") "$bg" 2>/dev/null; fi
    [[ ${KEEP:-0} -eq 1 ]] && echo "kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT

# ---- the jobs
common=(--set model.kind=mlp --set data.test_subset=1000 --set train.batch_size=64
        --set run.seed=11)
# the inputs of curve, fge, bma and surface: two 784-256-10 runs (seeds 11, 12) with SWAG
input_deck=("${common[@]}" --set model.widths=256 --set data.train_subset=2048 --set train.epochs=3
            --set train.swag=true --set train.swa_start=2 --set train.swa_freq=2
            --set train.swag_rank=4)
train_deck=("${common[@]}" --set model.widths=256 --set data.train_subset=8192 --set train.epochs=12
            --set train.checkpoint_every=1)
curve_deck=("${common[@]}" --set data.train_subset=4096 --set curve.epochs=10 --set curve.points=7
            --set curve.lr=0.05 --set train.checkpoint_every=1)
fge_deck=("${common[@]}" --set data.train_subset=8192 --set fge.cycle=2 --set fge.cycles=4)
bma_deck=("${common[@]}" --set data.test_subset=2000 --set bma.samples=40)
surface_deck=("${common[@]}" --set data.train_subset=8192 --set surface.basis=random
              --set surface.nx=20 --set surface.ny=20 --set surface.chunk=1
              --set surface.flush_seconds=0.05)
cat >"$dir/run.ini" <<'INI'
# kill_campaign.sh: `valley run` with every stage, small
[run]
stages = endpoints,evaluate,bma,fge,curve,surface,pca,infer,simplex
seed = 11
[data]
train_subset = 8192
test_subset = 1000
[model]
kind = mlp
widths = 128
[train]
batch_size = 64
epochs = 6
swag = true
swa_start = 4
swa_freq = 2
swag_rank = 4
[bma]
samples = 10
[fge]
cycle = 2
cycles = 2
[curve]
epochs = 4
points = 7
lr = 0.05
[surface]
nx = 12
ny = 12
chunk = 1
flush_seconds = 0.05
[pca]
rank = 3
[infer]
rank = 3
samples = 10
burnin = 2
train_subset = 1000
[simplex]
vertices = 3
epochs = 2
samples = 2
eval_samples = 4
grid = 4
train_subset = 2000
INI

# job_args KIND: the command line of a KIND job without --out, into the array `args`
job_args() {
    local in=$dir/inputs
    case $1 in
        train) args=(train "${train_deck[@]}") ;;
        curve) args=(curve "$in/a/model.nc" "$in/b/model.nc" "${curve_deck[@]}") ;;
        fge) args=(fge "$in/a/model.nc" "${fge_deck[@]}") ;;
        bma) args=(bma "$in/a/swag.nc" "$in/a/model.nc" "$in/b/model.nc" "${bma_deck[@]}") ;;
        surface) args=(surface "$in/a/model.nc" "${surface_deck[@]}") ;;
        run) args=(run "$dir/run.ini") ;;
    esac
}

# the inputs (once): two trained runs with SWAG on 2 ranks
inputs() {
    [[ -f $dir/inputs/b/swag.nc ]] && return 0
    local s
    for s in a:11 b:12; do
        timeout 120 $MPIRUN -np 2 "$VALLEY" train "${input_deck[@]}" --set "run.seed=${s#*:}" \
            --out "$dir/inputs/${s%%:*}" >"$dir/inputs-${s%%:*}.log" 2>&1 ||
            { tail -5 "$dir/inputs-${s%%:*}.log"; echo "kill_campaign: input ${s%%:*} failed"
              return 1; }
    done
}

trials=0 killed=0 early=0 failures=0 files=0 tmps=0 resumed=0 maxsecs=0 inwrites=0
declare -A k_trials k_killed k_ok
fail_trial() { echo "    FAIL: $*"; failures=$((failures + 1)); trial_ok=0; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# reference run per kind and rank count (cached): ref-KIND-NP, ref_secs
declare -A ref_secs
reference() { # KIND NP
    local kind=$1 np=$2 out=$dir/ref-$1-$2
    [[ -n ${ref_secs[$kind-$np]:-} ]] && return 0
    inputs || return 1
    job_args "$kind"
    local t0; t0=$(now)
    timeout 120 $MPIRUN -np "$np" "$VALLEY" "${args[@]}" --out "$out" >"$out.log" 2>&1 ||
        { tail -5 "$out.log"; echo "kill_campaign: reference $kind on $np ranks failed"; return 1; }
    ref_secs[$kind-$np]=$(elapsed "$t0")
}

# every final-named .nc under DIR readable; adds to files/tmps
check_files() { # DIR
    local out
    out=$("$PYTHON" - "$1" <<'EOF'
import os, sys, netCDF4
good = bad = tmp = 0
for root, _, names in os.walk(sys.argv[1]):
    for n in names:
        p = os.path.join(root, n)
        if ".tmp." in n:
            tmp += 1
            continue
        if not n.endswith(".nc"):
            continue
        try:
            with netCDF4.Dataset(p) as f:
                for v in f.variables.values():
                    v[...]
            good += 1
        except Exception as e:
            bad += 1
            print(f"BAD {os.path.relpath(p, sys.argv[1])}: {e}", file=sys.stderr)
print(good, bad, tmp)
EOF
)
    local good nbad ntmp
    read -r good nbad ntmp <<<"$out"
    files=$((files + good)); tmps=$((tmps + ntmp))
    trial_files=$good trial_tmps=$ntmp
    [[ ${nbad:-1} -eq 0 ]] || fail_trial "$nbad file(s) under a final name are unreadable"
}

# the whole tree of NetCDF files against the uninterrupted run's, exactly; sets `compared`
compare_tree() { # REF OUT
    local log=$dir/compare.log
    "$PYTHON" tests/py/nc_tree_compare.py "$1" "$2" --exclude history.nc:time \
        --exclude infer.nc:chain_seconds >"$log" 2>&1 ||
        { sed 's/^/      | /' "$log" | tail -8
          fail_trial "the results differ from the uninterrupted run's"; }
    compared=$(grep -oE '[0-9]+ file\(s\) compared' "$log" | grep -oE '^[0-9]+')
}

# finish KIND NP OUT: resumes / reruns the killed job in its own directory; sets `how`
finish() {
    local kind=$1 np=$2 out=$3 extra=() ck
    case $kind in
        train|curve)
            ck=$(ls "$out"/checkpoints/epoch_*.nc 2>/dev/null | sort | tail -1)
            if [[ -n $ck ]]; then
                how="resumed from $(basename "$ck")"; extra=(--set "train.resume=$ck")
            else
                how="rerun (no checkpoint yet)"
            fi ;;
        fge) how="rerun with train.resume=auto"; extra=(--set train.resume=auto) ;;
        surface) how="rerun ($([[ -f $out/surface.nc ]] && echo "surface.nc kept" ||
                               echo "no surface.nc yet"))" ;;
        *) how="rerun" ;;
    esac
    job_args "$kind"
    timeout 120 $MPIRUN -np "$np" "$VALLEY" "${args[@]}" "${extra[@]}" --out "$out" \
        >"$out.resume.log" 2>&1 ||
        { tail -5 "$out.resume.log" | sed 's/^/      | /'
          fail_trial "the resumed / rerun job failed"; }
    if [[ $kind == run ]]; then
        local reused
        reused=$(grep -oE 'stage [a-z]+: reusing' "$out.resume.log" | awk '{ print $2 }' | tr -d : |
                 tr '\n' ' ')
        how="$how, reusing: ${reused:-nothing}"
        [[ -s $out/report.md ]] || fail_trial "no report.md after the rerun"
    fi
}

# the pid of world rank R among mpirun's children
rank_pid() { # MPIRUN_PID R
    local p
    for p in $(pgrep -P "$1"); do
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" &&
            { echo "$p"; return; }
    done
}

echo "kill campaign: $N trials, seed $SEED (KILL_SEED=$SEED reproduces the choices)," \
     "kinds ${KINDS[*]}, ranks ${NPS[*]}"
for ((t = 1; t <= N; t++)); do
    kind=${KINDS[RANDOM % ${#KINDS[@]}]}
    np=${NPS[RANDOM % ${#NPS[@]}]}
    victim=$((RANDOM % np))
    reference "$kind" "$np" || exit 1
    # a moment in [0.15 s, 90% of the uninterrupted run's duration]
    delay=$(awk -v r="$RANDOM" -v T="${ref_secs[$kind-$np]}" \
        'BEGIN { printf "%.2f", 0.15 + (0.9 * T - 0.15) * r / 32767 }')
    out=$dir/t$t
    trials=$((trials + 1)); trial_ok=1; trial_files=0; trial_tmps=0; compared=0
    k_trials[$kind]=$(( ${k_trials[$kind]:-0} + 1 ))
    job_args "$kind"
    $MPIRUN -np "$np" "$VALLEY" "${args[@]}" --out "$out" >"$out.log" 2>&1 &
    bg=$!
    sleep "$delay"
    # half of the trials wait (at most 3 s) for a file being written (a *.tmp.* name) and
    # kill the rank then, to land inside a checkpoint / history / surface.nc write
    inwrite=$((RANDOM % 2))
    if [[ $inwrite -eq 1 ]]; then
        for ((i = 0; i < 600; i++)); do
            [[ -n $(find "$out" -name '*.tmp.*' 2>/dev/null | head -1) ]] && break
            kill -0 "$bg" 2>/dev/null || break
            sleep 0.005
        done
        [[ $i -lt 600 ]] && kill -0 "$bg" 2>/dev/null && delay="$delay+write" || inwrite=0
    fi
    pid=""
    for ((i = 0; i < 20; i++)); do
        [[ -z $pid ]] || break
        kill -0 "$bg" 2>/dev/null || break
        pid=$(rank_pid "$bg" "$victim")
        [[ -n $pid ]] || sleep 0.05
    done
    kt=$(now)
    if [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null; then did_kill=1; else did_kill=0; fi
    for ((i = 0; i < 600; i++)); do kill -0 "$bg" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$bg" 2>/dev/null; then
        kill -KILL $(pgrep -P "$bg") "$bg" 2>/dev/null
        wait "$bg"; bg=""
        fail_trial "$kind np=$np: still running 60 s after kill -9 of rank $victim (hang)"
        continue
    fi
    wait "$bg"; st=$?; bg=""
    secs=$(elapsed "$kt")
    awk -v a="$secs" -v b="$maxsecs" 'BEGIN { exit !(a > b) }' && maxsecs=$secs
    if [[ $did_kill -eq 1 && $st -ne 0 ]]; then
        killed=$((killed + 1)); k_killed[$kind]=$(( ${k_killed[$kind]:-0} + 1 ))
        [[ $inwrite -eq 1 ]] && inwrites=$((inwrites + 1))
        what="killed rank $victim at $delay s: exit $st after $secs s"
    elif [[ $did_kill -eq 1 ]]; then
        fail_trial "rank $victim killed but the job's exit status is 0"
        what="killed rank $victim: exit 0"
    else
        early=$((early + 1)); what="finished (exit $st) before the kill at $delay s"
        [[ $st -eq 0 ]] || fail_trial "ended with $st without being killed"
    fi
    check_files "$out"
    # resume / rerun to the end in the same directory, compare with the uninterrupted run
    how="compared as is"
    [[ $st -ne 0 ]] && finish "$kind" "$np" "$out"
    compare_tree "$dir/ref-$kind-$np" "$out"
    if [[ $trial_ok -eq 1 ]]; then
        k_ok[$kind]=$(( ${k_ok[$kind]:-0} + 1 ))
        [[ $st -ne 0 ]] && resumed=$((resumed + 1))
    fi
    printf 'trial %2d: %-7s np=%d  %s; %d file(s) readable, %d tmp left; %s: %s\n' \
        "$t" "$kind" "$np" "$what" "$trial_files" "$trial_tmps" "$how" \
        "$([[ $trial_ok -eq 1 ]] && echo "$compared file(s) bit-identical" || echo "FAILED")"
    [[ ${KEEP:-0} -eq 1 && $trial_ok -eq 0 ]] || rm -rf "$out" "$out".*log
done
echo "summary: $trials trials (seed $SEED): $killed killed mid-run ($inwrites inside a write)," \
     "all ended non-zero (slowest $maxsecs s after the kill); $early finished before the kill;" \
     "$files final files checked readable, $tmps tmp file(s) left by killed writers;" \
     "$resumed resumed/rerun bit-identical; $failures failure(s)"
for k in "${KINDS[@]}"; do
    [[ -n ${k_trials[$k]:-} ]] || continue
    printf '  %-7s %3d trial(s), %3d killed mid-run, %3d bit-identical at the end; uninterrupted:' \
        "$k" "${k_trials[$k]}" "${k_killed[$k]:-0}" "${k_ok[$k]:-0}"
    for np in "${NPS[@]}"; do
        [[ -n ${ref_secs[$k-$np]:-} ]] && printf ' %s s (np=%s)' "${ref_secs[$k-$np]}" "$np"
    done
    echo
done
[[ $failures -eq 0 ]]
