#!/usr/bin/env python3
"""Plots latency distributions of ferrogrpc and tonic from h2load request logs.

Reads the per-request logs that benchmark/unary-vs-tonic.sh keeps
($BENCH_DIR/lat-ours-r<N>.log, lat-tonic-r<N>.log: h2load --log-file lines of
"start_us status latency_us") and draws, side by side, the latency CDF (log
latency axis) and the tail (latency at each percentile, with 1/(1-p) on a log
axis, as HdrHistogram plots do).
Every round of a side is pooled.

usage: plot_latency.py BENCH_DIR OUT.png [title]
needs: matplotlib (pip install matplotlib into a venv; not a project dependency)
"""
import glob
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(pattern):
    """Latencies in microseconds of every successful request in the files."""
    values = []
    files = sorted(glob.glob(pattern))
    for path in files:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] == "200":
                    values.append(int(parts[2]))
    values.sort()
    return values, len(files)


def quantile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    bench_dir, out = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else "Unary SayHello latency under h2load"
    sides = [
        ("ferrogrpc", "lat-ours-r*.log", "tab:blue"),
        ("tonic", "lat-tonic-r*.log", "tab:orange"),
    ]
    fig, (cdf, tail) = plt.subplots(1, 2, figsize=(12, 4.8))
    summary = []
    for name, pattern, color in sides:
        values, rounds = load(os.path.join(bench_dir, pattern))
        if not values:
            sys.exit(f"no latencies in {os.path.join(bench_dir, pattern)}")
        n = len(values)
        ys = [(i + 1) / n for i in range(n)]
        ms = [v / 1000 for v in values]
        p50, p99, p999 = (quantile(values, q) / 1000 for q in (0.5, 0.99, 0.999))
        label = f"{name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, p99.9 {p999:.2f} ms"
        cdf.plot(ms, ys, color=color, label=name)
        # Tail: x = 1/(1-p), so p50 is 2, p99 is 100, p99.9 is 1000.
        step = max(1, n // 20000)
        xs = [1 / (1 - (i + 0.5) / n) for i in range(0, n, step)]
        tail.plot(xs, ms[::step], color=color, label=label)
        summary.append(f"{name}: {n} requests, {rounds} round(s)")
    cdf.set_xscale("log")
    cdf.set_xlabel("latency (ms, log scale)")
    cdf.set_ylabel("fraction of requests")
    cdf.set_title("CDF")
    cdf.grid(True, alpha=0.3)
    cdf.legend(loc="upper left", fontsize=9)
    tail.set_xscale("log")
    tail.set_xticks([2, 10, 100, 1000, 10000])
    tail.set_xticklabels(["p50", "p90", "p99", "p99.9", "p99.99"])
    tail.set_yscale("log")
    tail.set_ylabel("latency (ms, log scale)")
    tail.set_title("percentiles (tail)")
    tail.grid(True, which="both", alpha=0.3)
    tail.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{title}\n{'; '.join(summary)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
