#!/usr/bin/env bash
# tests/fuzz/run.sh [--runs N] [SECONDS] [TARGET...] — the fuzz campaign, one command.
#   SECONDS   time per target (default 60; with --runs a time limit, default none)
#   --runs N  each target runs until N executions (libFuzzer -runs=N; in fork mode the
#             count is checked between jobs, so a target ends a little past N)
#   TARGETs   default: deck idx csv cifar dataset checkpoint subspace
# Examples: run.sh 60 (a minute per target); run.sh --runs 1000000 (10^6 executions each).
# Builds the targets (build.sh), makes the seeds once (make_seeds.sh -> build/fuzz/seeds),
# fuzzes each target on one core (working corpus build/fuzz/corpus/TARGET, grown from the
# seeds and tests/corpus/TARGET), then curates: the minimised corpus (-merge=1) is
# replayed through bin/valley (replay.py) and the small inputs (<= 32 KiB) that valley
# rejects with exit 2 are added to tests/corpus/TARGET (at most CORPUS_MAX new ones per
# run, default 12), to be replayed by tests/sh/rel_corpus.sh in `make check`.
# Fuzzing runs in fork mode and goes on after a crash; crashes are saved as
# build/fuzz/crashes/TARGET-* and classified by their first non-sanitizer stack frame:
# in valley's code (the script then exits 1) or in a library (HDF5, netCDF: reported in
# build/fuzz/crashes.txt; see doc/reliability.md), or not reproducible alone. Prints a
# table: per target the executions, seconds, executions per second, corpus size, inputs
# added and the findings (build/fuzz/summary.txt).
# Speed (doc/reliability.md): the targets' scratch files live on a tmpfs (TMPDIR under
# /dev/shm; on a disk file system the per-input file writes and fsyncs took most of the
# time); the known HDF5 crashers of tests/corpus (hdf5crash_*) are not given to the
# fuzzer as seeds: they crash the target process whenever it replays them (valley's
# forked probe runs only at the first open of a path in a process), and fork mode replays
# the corpus at the start of every job, so they made most jobs die at start-up. They
# stay in tests/corpus, replayed through valley by rel_corpus.
# Sanitizer options: leaks are not checked (netCDF and HDF5 keep global allocations);
# allocator_may_return_null=1 with max_allocation_size_mb=512 makes any malloc over 512 MiB
# fail (NULL) as under a memory limit; a third-party library then fails as it would
# in production, while a valley reader running out of memory on a small input is
# reported by the target itself (fuzz_common.h).
set -uo pipefail
cd "$(dirname "$0")/../.."
RUNS=0
if [[ ${1:-} == --runs ]]; then
    RUNS=${2:?"--runs needs a number"}
    shift 2
    [[ $RUNS =~ ^[0-9]+$ && $RUNS -gt 0 ]] || { echo "fuzz: --runs wants a count"; exit 2; }
    SECS=0
    [[ ${1:-} =~ ^[0-9]+$ ]] && { SECS=$1; shift; }
else
    SECS=${1:-60}
    shift || true
    [[ $SECS =~ ^[0-9]+$ && $SECS -gt 0 ]] || { echo "fuzz: SECONDS wants a number"; exit 2; }
fi
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(deck idx csv cifar onnx dataset checkpoint subspace)
CORPUS_MAX=${CORPUS_MAX:-12}
export VALLEY=${VALLEY:-$PWD/bin/valley} PYTHON=${PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=512
export UBSAN_OPTIONS=print_stacktrace=1
tests/fuzz/build.sh >build/fuzz-build.log 2>&1 ||
    { tail -30 build/fuzz-build.log; echo "fuzz: build failed"; exit 1; }
OUT=build/fuzz
[[ -x $VALLEY ]] || { echo "fuzz: $VALLEY not built (make all)"; exit 1; }
if [[ ! -d $OUT/seeds/netcdf || ! -d $OUT/seeds/cifar || ! -d $OUT/seeds/onnx ]]; then
    tests/fuzz/make_seeds.sh "$OUT/seeds.new" >/dev/null && rm -rf "$OUT/seeds" && mv "$OUT/seeds.new" "$OUT/seeds" ||
        { echo "fuzz: seeds failed"; exit 1; }
fi
seed_of() {
    case $1 in
        dataset|checkpoint|subspace) echo "$OUT/seeds/netcdf" ;;
        *) echo "$OUT/seeds/$1" ;;
    esac
}
mkdir -p "$OUT/crashes"
scratch=/dev/shm
[[ -d $scratch && -w $scratch ]] || scratch=/tmp
export TMPDIR=$(mktemp -d "$scratch/valley-fuzz-run.XXXXXX")
trap 'rm -rf "$TMPDIR"' EXIT
summary=$OUT/summary.txt
limit="$([[ $RUNS -gt 0 ]] && echo "until $RUNS executions" || echo "")"
limit="$limit$([[ $RUNS -gt 0 && $SECS -gt 0 ]] && echo ", ")"
limit="$limit$([[ $SECS -gt 0 ]] && echo "at most $SECS s")"
echo "fuzz: per target $limit; scratch files in $TMPDIR" | tee "$summary"
fmt='%-11s %11s %8s %8s %7s %6s %7s %8s %6s  %s\n'
printf "$fmt" target executions seconds "exec/s" corpus added "valley" library alone result |
    tee -a "$summary"
: >"$OUT/crashes.txt"
status=0 total_runs=0 total_secs=0
for t in "${targets[@]}"; do
    bin=$OUT/fuzz_$t
    [[ -x $bin ]] || { echo "fuzz: no target $t"; status=1; continue; }
    work=$OUT/corpus/$t
    mkdir -p "$work" "tests/corpus/$t"
    log=$OUT/$t.log
    # the seeds: valley's own files and tests/corpus/TARGET without the known HDF5 crashers
    seeds=$TMPDIR/seeds-$t
    rm -rf "$seeds"; mkdir -p "$seeds"
    for f in "tests/corpus/$t"/*; do
        [[ -f $f && $(basename "$f") != hdf5crash_* ]] && cp "$f" "$seeds/"
    done
    # the working corpus of earlier runs, merged again (libFuzzer's crash-resistant merge):
    # inputs that crash the target now are dropped, or every fork-mode job that replays
    # one at its start would crash there
    if [[ -n $(ls -A "$work") ]]; then
        rm -rf "$TMPDIR/work-$t"; mkdir -p "$TMPDIR/work-$t"
        "$bin" -merge=1 -timeout=30 -max_len=65536 -rss_limit_mb=2560 -artifact_prefix="$TMPDIR/" \
            "$TMPDIR/work-$t" "$work" >"$OUT/$t-merge.log" 2>&1 &&
            [[ -n $(ls -A "$TMPDIR/work-$t") ]] && rm -rf "$work" && mv "$TMPDIR/work-$t" "$work"
    fi
    # fork mode: a crash (even one inside HDF5 or netCDF) is saved and fuzzing goes on
    rm -f "$OUT/crashes/$t-"*
    t0=$(date +%s.%N)
    nice "$bin" -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
        -runs="$([[ $RUNS -gt 0 ]] && echo "$RUNS" || echo -1)" -max_total_time="$SECS" \
        -timeout=30 -max_len=65536 -rss_limit_mb=2560 -malloc_limit_mb=1024 \
        -artifact_prefix="$OUT/crashes/$t-" "$work" "$(seed_of "$t")" "$seeds" >"$log" 2>&1
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
    last=$(grep -E '^#[0-9]+: cov' "$log" | tail -1)
    runs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
    runs=${runs:-0}
    eps=$(awk -v n="$runs" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
    total_runs=$((total_runs + runs)); total_secs=$((total_secs + secs))
    # classify each crash by the first stack frame that is not the sanitizer's: valley's
    # code (a bug to fix: the run fails) or a library's (HDF5, netCDF, zlib: reported)
    result=ok ours=0 theirs=0 alone=0
    for c in "$OUT/crashes/$t-"*; do
        [[ -f $c ]] || continue
        # (its own artifact goes to the scratch directory, not to the working directory)
        where=$("$bin" -runs=1 -timeout=30 -rss_limit_mb=2560 -malloc_limit_mb=1024 \
            -artifact_prefix="$TMPDIR/" "$c" 2>&1 | "$PYTHON" -c '
import re, sys
for line in sys.stdin:
    if "runtime error:" in line and "/src/" in line:
        print("valley " + line.split("runtime error:")[0].strip()); break
    m = re.match(r"\s+#\d+ 0x[0-9a-f]+ in (\S+) (.*)", line)
    if not m:
        continue
    fn, loc = m.groups()
    if re.search(r"/(src|tests/fuzz)/[\w.]+\.[ch]:\d+", loc):
        print("valley " + fn); break
    if re.search(r"lib(hdf5|netcdf|z|mpi)", loc):
        print("library " + fn + " " + re.search(r"lib\w+", loc).group(0)); break
else:
    print("none: does not crash when run alone (state left by earlier inputs in the process)")')
        case $where in
            library*) theirs=$((theirs + 1)) ;;
            none*) alone=$((alone + 1)) ;;
            *) ours=$((ours + 1)) ;;
        esac
        echo "    crash $(basename "$c"): in $where" >>"$OUT/crashes.txt"
    done
    [[ $ours -gt 0 ]] && { result="crash(es) in valley"; status=1; }
    [[ $ours -eq 0 && $((theirs + alone)) -gt 0 ]] && result="see $OUT/crashes.txt"
    # curate: minimise, replay through valley, keep small rejected inputs
    min=$TMPDIR/min-$t
    rm -rf "$min"; mkdir -p "$min"
    "$bin" -merge=1 -max_len=65536 -timeout=30 "$min" "$work" >/dev/null 2>&1
    added=0
    for f in $(ls -S -r "$min"); do
        [[ $added -lt $CORPUS_MAX ]] || break
        p=$min/$f
        [[ $(stat -c %s "$p") -le 32768 ]] || continue
        [[ -e tests/corpus/$t/$f ]] && continue
        "$PYTHON" tests/fuzz/replay.py "$t" "$p" "$TMPDIR/replay" >/dev/null 2>&1
        if [[ $? -eq 2 ]]; then cp "$p" "tests/corpus/$t/$f"; added=$((added + 1)); fi
    done
    total=$(ls "tests/corpus/$t" | wc -l)
    printf "$fmt" "$t" "$runs" "$secs" "$eps" "$total" "$added" "$ours" "$theirs" "$alone" \
        "$result" | tee -a "$summary"
done
printf "$fmt" total "$total_runs" "$total_secs" "" "" "" "" "" "" "" | tee -a "$summary"
echo "valley / library / alone: crashes in valley's code / in a library / not reproducible alone;"
echo "summary in $summary; crashes (if any) in $OUT/crashes/ and $OUT/crashes.txt"
exit $status
