#!/usr/bin/env python3
"""Draws docs/performance.svg: tailship's end-to-end figures beside the peers' published ones.

tailship's numbers are read from a JSON-lines file that `cargo bench --bench e2e` appends to
when E2E_RESULT names it (default: docs/performance-runs.jsonl); the chart shows the newest run
of the path the peers' figures are for (raw lines from a file → TCP, NDJSON records). The
peers' figures are the ones docs/performance.md quotes; they are not measured here.

Standard library only, so it runs wherever Python 3 does:
    python3 scripts/perf-chart.py [--runs FILE] [--out FILE]
"""

import argparse
import json
import sys
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent

# (name, MB/s, CPU-s per GB or None when not published, where the figure comes from)
PEERS = [
    ("Fluent Bit", 130.0, 7.4, "design notes, file → TCP JSON lines"),
    ("Vector", 54.0, 28.0, "design notes, file → TCP JSON lines"),
    ("LoongCollector", 546.0, None, "its README: file → blackhole, one thread"),
]

# The e2e bench's default path, the one the peers' figures compare with.
PATH = "raw → tcp ndjson"

WIDTH, BAR_H, GAP = 940, 26, 10
PANEL_W = 330
LABEL_W = 130
TOP = 70


def newest_run(runs_file):
    runs = []
    for n, line in enumerate(runs_file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            run = json.loads(line)
        except json.JSONDecodeError as e:
            sys.exit(f"{runs_file}:{n}: not JSON: {e}")
        if run.get("path") == PATH and not run.get("steady"):
            runs.append(run)
    if not runs:
        sys.exit(f"{runs_file}: no run of {PATH!r}; run E2E_RESULT={runs_file} cargo bench --bench e2e")
    return max(runs, key=lambda r: r.get("date", "")), runs


def panel(x0, title, rows, unit, better):
    """One bar panel: rows are (name, value or None, is_tailship)."""
    top = max(v for _, v, _ in rows if v is not None)
    out = [
        f'<text x="{x0}" y="{TOP - 28}" class="title">{escape(title)}</text>',
        f'<text x="{x0}" y="{TOP - 12}" class="note">{escape(better)}</text>',
    ]
    for i, (name, value, ours) in enumerate(rows):
        y = TOP + i * (BAR_H + GAP)
        out.append(f'<text x="{x0 + LABEL_W - 8}" y="{y + BAR_H * 0.68}" class="label" text-anchor="end">{escape(name)}</text>')
        if value is None:
            out.append(f'<text x="{x0 + LABEL_W + 4}" y="{y + BAR_H * 0.68}" class="note">not published</text>')
            continue
        w = max(2.0, (PANEL_W - 120) * value / top)
        colour = "#1f77b4" if ours else "#a0a0a0"
        out.append(f'<rect x="{x0 + LABEL_W}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{colour}"/>')
        text = f"{value:,.0f}" if value >= 10 else f"{value:.2f}"
        out.append(f'<text x="{x0 + LABEL_W + w + 6:.1f}" y="{y + BAR_H * 0.68}" class="value">{text} {unit}</text>')
    return out


def draw(run, runs):
    ours = "tailship"
    mbs = [(ours, run["mb_per_s"], True)] + [(n, m, False) for n, m, _, _ in PEERS]
    cpu = [(ours, run["cpu_s_per_gb"], True)] + [(n, c, False) for n, _, c, _ in PEERS]
    height = TOP + len(mbs) * (BAR_H + GAP) + 30 + 16 * (len(PEERS) + 4)
    size = run["bytes"] / 2**20
    lines = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">',
        "<style>.title{font-size:15px;font-weight:bold}.label{font-size:13px}.value{font-size:12px}.note{font-size:11px;fill:#555}</style>",
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
    ]
    lines += panel(10, "Throughput, file → TCP", mbs, "MB/s", "higher is better")
    lines += panel(20 + LABEL_W + PANEL_W, "CPU per GB of log read", cpu, "CPU-s/GB", "lower is better")
    foot = TOP + len(mbs) * (BAR_H + GAP) + 18
    notes = [
        f"tailship: cargo bench --bench e2e ({PATH}, {size:,.0f} MiB of real log lines, {run.get('cpus', '?')} CPUs):",
        f"  the run of {run.get('date', '?')} (commit {run.get('commit') or '?'}), the newest of {len(runs)} in docs/performance-runs.jsonl.",
        f"All {len(runs)} runs on file: {min(r['mb_per_s'] for r in runs):,.0f}–{max(r['mb_per_s'] for r in runs):,.0f} MB/s, "
        f"{min(r['cpu_s_per_gb'] for r in runs):.2f}–{max(r['cpu_s_per_gb'] for r in runs):.2f} CPU-s/GB "
        "(this shared 2-vCPU machine swings 2–4× from day to day).",
        "Peers: published figures quoted in docs/performance.md, not measured here (not side by side: an order of magnitude):",
    ] + [f"  {n}: {s}" for n, _, _, s in PEERS]
    for i, note in enumerate(notes):
        lines.append(f'<text x="10" y="{foot + i * 16}" class="note">{escape(note)}</text>')
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "docs/performance-runs.jsonl")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/performance.svg")
    args = ap.parse_args()
    run, runs = newest_run(args.runs)
    args.out.write_text(draw(run, runs), encoding="utf-8")
    print(f"{args.out}: tailship {run['mb_per_s']:.0f} MB/s, {run['cpu_s_per_gb']:.2f} CPU-s/GB ({run.get('date')})")


if __name__ == "__main__":
    main()
