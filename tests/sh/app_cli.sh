#!/usr/bin/env bash
# End-to-end: the command line (INTERFACE "The program") and output provenance.
#   valley --version (and the kernel path it names, VALLEY_ISA chosen, bad or too high);
#   valley help; valley help train (lists train.lr with its live
#   default 0.05); valley help train --set train.lr=0.1 (shows 0.1); unknown command,
#   no command, unknown option, `help` of an unknown command -> status 2;
#   every output (model.nc, history.nc, checkpoints, eval.nc) carries the global
#   attributes valley_version and git_commit equal to what --version prints (the
#   prepared dataset: present, as it may come from an earlier build), and `deck`: the effective deck, which must itself be a valid
#   deck that reproduces the run's settings (fed back to `valley help train`).
#   Each output records the keys of the command that wrote it (issue 20, item 4): the
#   dataset file those of `prepare` (no [train] or [model]), eval.nc and bma.nc of an mlp
#   say model.kind = mlp "# from" the model file (the deck's default is convnet), and
#   no training keys.
set -u
source "$(dirname "$0")/lib.bash"
test_setup app_cli
# v LABEL WANT_STATUS args...: runs valley, output in $dir/LABEL.out
v() {
    local label=$1 want=$2 st
    shift 2
    timeout 60 "$VALLEY" "$@" >"$dir/$label.out" 2>&1
    st=$?
    [[ $st -eq $want ]] || { err "valley $* -> status $st, want $want"; sed 's/^/    | /' "$dir/$label.out" | head -10; }
}
has() { grep -qE -- "$2" "$dir/$1.out" || { err "$1: output lacks /$2/"; sed 's/^/    | /' "$dir/$1.out" | head -10; }; }

v version 0 --version
has version '^valley [0-9]+\.[0-9]+\.[0-9]+ \(git [^)]+\)$'
version=$(sed -nE 's/^valley ([^ ]+) \(git ([^)]+)\)$/\1/p' "$dir/version.out")
commit=$(sed -nE 's/^valley ([^ ]+) \(git ([^)]+)\)$/\2/p' "$dir/version.out")
echo "version '$version', commit '$commit'"
# the kernel path (issue 17): --version names it and what the CPU can run; VALLEY_ISA picks a
# lower one, and a value that is no path (or above the CPU's) is reported and the CPU's best used
has version '^kernels: (avx512|avx2|portable) \(this CPU can run: [a-z0-9 ]+;'
cpu_best=$(sed -nE 's/^kernels: .*this CPU can run: ([a-z0-9]+).*/\1/p' "$dir/version.out")
VALLEY_ISA=portable v isa_portable 0 --version
has isa_portable '^kernels: portable '
VALLEY_ISA=sse9 v isa_bad 0 --version
has isa_bad 'VALLEY_ISA=sse9 is not a kernel path \(avx512, avx2, portable\); using '"$cpu_best"
has isa_bad "^kernels: $cpu_best "
if [[ $cpu_best != avx512 ]]; then
    VALLEY_ISA=avx512 v isa_above 0 --version
    has isa_above "this CPU runs at most $cpu_best"
fi

v help 0 help
for c in prepare train evaluate run; do has help "^  $c "; done
has help 'valley --version'

v help_train 0 help train
has help_train '^ *train\.lr +=? *0\.05( |$)'
has help_train '^ *train\.epochs +=? *20( |$)'
has help_train '^ *run\.seed +=? *1( |$)'
v help_train_set 0 help train --set train.lr=0.1
has help_train_set '^ *train\.lr +=? *0\.1( |$)'
grep -qE '^ *train\.lr +=? *0\.05( |$)' "$dir/help_train_set.out" && err "help train --set train.lr=0.1 still shows 0.05 as the value"

v unknown_command 2 frobnicate
has unknown_command "frobnicate"
v no_command 2
v unknown_option 2 train --frobnicate
has unknown_option "frobnicate"
v help_unknown_command 2 help frobnicate    # `valley help [command]`: an unknown command is bad input

# provenance of every output
timeout 60 "$VALLEY" train --set model.kind=mlp --set model.widths=16 --set data.train_subset=256 \
    --set data.test_subset=100 --set train.epochs=2 --set train.checkpoint_every=1 --set train.lr=0.02 \
    --out "$dir/run" >"$dir/train.log" 2>&1 || { cat "$dir/train.log"; fail "training failed"; }
timeout 60 "$VALLEY" evaluate "$dir/run/model.nc" --set data.test_subset=100 --out "$dir/eval" >"$dir/eval.log" 2>&1 ||
    { cat "$dir/eval.log"; fail "evaluate failed"; }
timeout 60 "$VALLEY" bma "$dir/run/model.nc" --set data.test_subset=100 --set bma.methods=sgd --out "$dir/bma" \
    >"$dir/bma.log" 2>&1 || { cat "$dir/bma.log"; fail "bma failed"; }
timeout 60 "$VALLEY" prepare toy1d --set data.path="$dir/toy.nc" >"$dir/prep.log" 2>&1 ||
    { cat "$dir/prep.log"; fail "prepare toy1d --set data.path failed"; }
files=("$dir/run/model.nc" "$dir/run/history.nc" "$dir/run/checkpoints/epoch_0001.nc" "$dir/eval/eval.nc"
       "$dir/bma/bma.nc" "$dir/toy.nc" input/data/fashion-mnist.nc)
for f in "${files[@]}"; do [[ -f $f ]] || err "missing output $f"; done
"$PYTHON" - "$version" "$commit" "$dir/effective.ini" "${files[@]}" <<'EOF' || err "provenance attributes"
import sys, netCDF4
version, commit, deck_out, *files = sys.argv[1:]
bad = 0
for path in files:
    with netCDF4.Dataset(path) as f:
        a = {k: f.getncattr(k) for k in f.ncattrs()}
    for k, want in (("valley_version", version), ("git_commit", commit)):
        # the dataset was prepared by whichever build ran `prepare`: only require the attribute
        if path.startswith("input/") and a.get(k):
            continue
        if a.get(k) != want:
            print(f"{path}: {k} = {a.get(k)!r}, want {want!r}"); bad += 1
    deck = a.get("deck", "")
    lines = deck.splitlines()
    if path.startswith("input/"):
        continue  # prepared by whichever build was first: provenance only
    if "[data]" not in lines or "[run]" not in lines:
        print(f"{path}: attribute deck is not an effective deck: {deck[:80]!r}"); bad += 1
    if path.endswith("toy.nc"):
        want, unwanted = ["`valley prepare`", "dataset = toy1d"], ["[train]", "[model]", "[bma]"]
    elif path.endswith(("eval.nc", "bma.nc")):
        want = ["kind = mlp  # from " + files[0], "widths = 16  # from"]
        unwanted = ["lr = 0.02", "epochs = 2", "[surface]", "[curve]"]
        want.append("`valley bma`" if path.endswith("bma.nc") else "`valley evaluate`")
    else:
        want, unwanted = ["`valley train`", "[train]", "lr = 0.02"], ["[bma]", "[surface]", "[pca]"]
    for w in want:
        if not any(w in l for l in lines):
            print(f"{path}: the deck attribute lacks {w!r}"); bad += 1
    for u in unwanted:
        if any(l.startswith(u) for l in lines):
            print(f"{path}: the deck attribute holds {u!r}, which its command does not read"); bad += 1
    if path.endswith("model.nc"):
        if "lr = 0.02" not in deck or "epochs = 2" not in deck:
            print(f"{path}: the deck attribute does not hold the run's --set values"); bad += 1
        open(deck_out, "w").write(deck)
if not bad:
    print(f"{len(files)} files carry valley_version {version!r}, git_commit {commit!r} and deck")
sys.exit(1 if bad else 0)
EOF
# the effective deck is a deck: loading it gives back the run's values
if [[ -f $dir/effective.ini ]]; then
    v help_effective 0 help train "$dir/effective.ini"
    has help_effective '^ *train\.lr +=? *0\.02( |$)'
    has help_effective '^ *train\.epochs +=? *2( |$)'
    has help_effective '^ *model\.kind +=? *mlp( |$)'
    has help_effective '^ *model\.widths +=? *16( |$)'
fi
[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "$name: ok"
