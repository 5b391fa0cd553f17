#!/usr/bin/env python3
"""Table and plot spec of the SimGrid runs (jobs/scaling/sim/run.sh).

    report_sim.py sim.tsv simulated.md plot_spec.txt

Strong: speed-up T(1)/T(P), efficiency speed-up/P. Weak (work per rank fixed):
efficiency T(1)/T(P). Times are simulated seconds, max over ranks.
"""
import csv
import math
import sys


def main():
    src, md, spec = sys.argv[1:4]
    rows = list(csv.DictReader(open(src), delimiter="\t"))
    series = {}
    for r in rows:
        for k in ("ranks", "total", "compute", "comm"):
            r[k] = float(r[k])
        series.setdefault((r["study"], r["platform"]), []).append(r)
    out = ["| study | platform | ranks | simulated s | compute s | comm s | comm % | speed-up | efficiency |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    curves = {}
    for key, rs in sorted(series.items()):
        rs.sort(key=lambda r: r["ranks"])
        base = rs[0]
        weak = key[0].endswith("weak")
        for r in rs:
            p = r["ranks"] / base["ranks"]
            s = base["total"] / r["total"] * (p if weak else 1)
            e = s / p
            out.append(f"| {key[0]} | {key[1]} | {int(r['ranks'])} | {r['total']:.5f} | {r['compute']:.5f} | "
                       f"{r['comm']:.5f} | {100 * r['comm'] / r['total']:.1f} | {s:.1f} | {e:.2f} |")
            curves.setdefault(key, []).append((r["ranks"], s, e, r["comm"] / r["total"]))
    params = sorted({(r["study"], r["params"]) for r in rows if r["ranks"] == rows[0]["ranks"]})
    out.append("")
    out.append("Parameters (at the smallest rank count): " + "; ".join(f"{s}: {p}" for s, p in params))
    open(md, "w").write("\n".join(out) + "\n")

    def lx(c):
        return " ".join(f"{math.log2(p):g}" for p, *_ in c)

    lines = ["title valley communication skeleton under SimGrid SMPI (fat-tree, 1 rank per node)"]
    lines.append("panel strong scaling: speed-up T(1)/T(P)|log2 ranks|speed-up|1")
    allp = sorted({p for c in curves.values() for p, *_ in c})
    lines.append(f"series ideal|dashed|{' '.join(f'{math.log2(p):g}' for p in allp)}|{' '.join(f'{p:g}' for p in allp)}")
    for (study, plat), c in sorted(curves.items()):
        if study.endswith("strong"):
            lines.append(f"series {study.replace('_strong', '')} {plat}|linemarkers|{lx(c)}|{' '.join(f'{s:.5g}' for _, s, _, _ in c)}")
    lines.append("panel efficiency (markers: weak scaling)|log2 ranks|efficiency|0")
    for (study, plat), c in sorted(curves.items()):
        style = "markers" if study.endswith("weak") else "linemarkers"
        lines.append(f"series {study.replace('_', ' ')} {plat}|{style}|{lx(c)}|{' '.join(f'{e:.4f}' for _, _, e, _ in c)}")
    lines.append("panel communication share of the time (strong)|log2 ranks|comm / total|0")
    for (study, plat), c in sorted(curves.items()):
        if study.endswith("strong"):
            lines.append(f"series {study.replace('_strong', '')} {plat}|linemarkers|{lx(c)}|{' '.join(f'{f:.4f}' for *_, f in c)}")
    open(spec, "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
