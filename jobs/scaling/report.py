#!/usr/bin/env python3
"""Scaling table and plot spec from jobs/scaling/run.sh's results.tsv.

    report.py results.tsv measured.md plot_spec.txt

Strong scaling: speed-up S(P) = T(1) / T(P), efficiency S(P) / P. Weak scaling (work per
rank fixed): efficiency T(1) / T(P). T is the wall time in timers.txt (avg over ranks).
The phase columns are seconds per rank (avg); `mpi` is all time inside MPI calls
(includes waiting for slower ranks), `rest` = wall - mpi - io (computation that no
finer timer covers, start-up, reading the data).
"""
import csv
import sys


def main():
    src, md, spec = sys.argv[1:4]
    rows = list(csv.DictReader(open(src), delimiter="\t"))
    for r in rows:
        for k in r:
            if k not in ("study", "mode"):
                r[k] = float(r[k])
    groups = {}
    for r in rows:
        groups.setdefault((r["study"], r["mode"]), []).append(r)
    out = ["| study | scaling | ranks | cores | wall (s) | speed-up | efficiency | compute | allreduce | io | mpi avg | mpi max | rest | load |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    curves = {}
    for (study, mode), rs in groups.items():
        rs.sort(key=lambda r: r["ranks"])
        base = next((r for r in rs if r["ranks"] == 1), rs[0])
        kind = "weak" if mode == "weak" else "strong"
        for r in rs:
            p = r["ranks"]
            s = base["wall"] / r["wall"] * (p / base["ranks"] if kind == "weak" else 1.0)
            e = base["wall"] / r["wall"] if kind == "weak" else s / (p / base["ranks"])
            rest = r["wall"] - r["mpi"] - r["io"]
            over = " (oversubscribed)" if p > r["cores"] else ""
            name = study + (" (ScaLAPACK TSQR route)" if mode == "qr" else " (Gram route)" if study == "pca" else "")
            out.append(f"| {name} | {kind} | {int(p)}{over} | {int(r['cores'])} | {r['wall']:.2f} | "
                       f"{s:.2f} | {e:.2f} | {r['compute']:.2f} | {r['allreduce']:.2f} | {r['io']:.2f} | "
                       f"{r['mpi']:.2f} | {r['mpi_max']:.2f} | {rest:.2f} | {r.get('load1', float('nan')):.1f} |")
            curves.setdefault((study, mode), []).append((p, s, e, r))
    open(md, "w").write("\n".join(out) + "\n")

    def xs(c):
        return " ".join(f"{p:g}" for p, *_ in c)

    lines = ["title valley measured scaling on this machine (2 cores; 4 ranks oversubscribed)"]
    lines.append("panel strong scaling: speed-up T(1)/T(P)|ranks P|speed-up|0")
    allp = sorted({p for c in curves.values() for p, *_ in c})
    lines.append(f"series ideal|dashed|{' '.join(f'{p:g}' for p in allp)}|{' '.join(f'{p:g}' for p in allp)}")
    label = {"train": "train", "surface": "surface (groups)", "pca": "pca"}
    for (study, mode), c in sorted(curves.items()):
        if mode == "weak":
            continue
        lab = label.get(study, study) + (" TSQR" if mode == "qr" else "")
        lines.append(f"series {lab}|linemarkers|{xs(c)}|{' '.join(f'{s:.4f}' for _, s, _, _ in c)}")
    lines.append("panel parallel efficiency (solid strong, markers weak)|ranks P|efficiency|0")
    for (study, mode), c in sorted(curves.items()):
        lab = label.get(study, study) + (" TSQR" if mode == "qr" else "") + (" weak" if mode == "weak" else "")
        lines.append(f"series {lab}|{'markers' if mode == 'weak' else 'linemarkers'}|{xs(c)}|{' '.join(f'{e:.4f}' for _, _, e, _ in c)}")
    lines.append("panel time split, strong runs (s per rank)|ranks P|seconds|0")
    for study, parts in (("train", ("compute", "allreduce", "io")), ("surface", ("mpi", "rest")), ("pca", ("mpi", "rest"))):
        c = curves.get((study, "strong"))
        if not c:
            continue
        for part in parts:
            ys = [(r["wall"] - r["mpi"] - r["io"]) if part == "rest" else r[part] for *_, r in c]
            lines.append(f"series {study} {part}|linemarkers|{xs(c)}|{' '.join(f'{y:.4f}' for y in ys)}")
    open(spec, "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
