#!/usr/bin/env bash
# A user's own data (issue 15): the README's xarray example (the lines between its
# "own-data example" markers), run as it stands, writes mine.nc; valley trains a small
# convnet on it for one epoch on 1 and 2 ranks and evaluates it; the loaded inputs follow the
# file's per-channel normalisation (evaluate's recorded dataset is the file's). A variant with
# a wrong number of pixel_mean values and one without n_classes end with exit 2 naming the
# file and the attribute.
set -u
source "$(dirname "$0")/lib.bash"
test_setup data_own
sed -n '/<!-- own-data example/,/<!-- end of the own-data example/p' README.md | sed '1d;$d' | sed 's/^    //' >"$dir/example.py"
[[ $(wc -l <"$dir/example.py") -ge 5 ]] || fail "no own-data example found in README.md"
(cd "$dir" && "$PYTHON" example.py) || fail "the README's example failed"
[[ -f $dir/mine.nc ]] || fail "the README's example wrote no mine.nc"
D=(--set data.dataset=mine --set data.path="$dir/mine.nc" --set model.kind=convnet --set model.width_factor=0.25
   --set train.epochs=1 --set train.batch_size=16)
for np in 1 2; do
    $MPIRUN -np $np "$VALLEY" train "${D[@]}" --out "$dir/t$np" >"$dir/t$np.log" 2>&1 ||
        { tail -5 "$dir/t$np.log"; err "train on mine.nc on $np rank(s)"; }
done
grep -q '3x8x8 -> 4' "$dir/t1.log" || err "the model is not 3x8x8 -> 4"
"$VALLEY" evaluate "$dir/t1/model.nc" --set data.path="$dir/mine.nc" --out "$dir/ev" >"$dir/ev.log" 2>&1 ||
    { tail -3 "$dir/ev.log"; err "evaluate on mine.nc"; }
"$PYTHON" - "$dir" <<'PY' || err "bad-input variants"
import subprocess, sys, os, numpy as np, netCDF4
d = sys.argv[1]
for name, change, want in (("three_means", lambda f: f.setncattr("pixel_mean", [0.5, 0.5]), "pixel_mean"),
                           ("no_classes", lambda f: f.delncattr("n_classes"), "n_classes")):
    p = os.path.join(d, name + ".nc")
    subprocess.run(["cp", os.path.join(d, "mine.nc"), p], check=True)
    with netCDF4.Dataset(p, "a") as f:
        change(f)
    r = subprocess.run([os.environ.get("VALLEY", "bin/valley"), "train", "--set", "data.path=" + p,
                        "--set", "model.kind=mlp", "--out", os.path.join(d, "o_" + name)], capture_output=True, text=True)
    msg = (r.stdout + r.stderr).strip().splitlines()[-1]
    print(f"  {name}: exit {r.returncode}: {msg[:140]}")
    assert r.returncode == 2 and p in msg and want in msg, f"{name}: exit {r.returncode}, message {msg!r}"
    assert not os.path.exists(os.path.join(d, "o_" + name, "model.nc"))
PY
[[ $errors -eq 0 ]] || fail "$errors check(s) failed"
echo "data_own: ok"
