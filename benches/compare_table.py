"""Prints the sonic / PyTorch table from the JSON lines of `benches/compare_pytorch`."""

import json
import sys
import time


def main(path, threads):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    by = {}
    for r in rows:
        by.setdefault((r["case"], r["dtype"]), {})[r["impl"]] = r
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    torch_v = next((r.get("torch") for r in rows if r.get("torch")), "?")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; cpu: {cpu}; "
          f"threads: {threads}; torch {torch_v}")
    print("| case | dtype | sonic median s | PyTorch median s | ratio (median) | ratio (min) "
          "| ratio (CPU s) | sonic peak RSS MiB | PyTorch peak RSS MiB | ratio (RSS) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (case, dt), d in by.items():
        s, p = d.get("sonic", {}), d.get("pytorch", {})

        def cell(r, k, scale=1.0, fmt="{:.3f}"):
            return fmt.format(r[k] / scale) if k in r else r.get("error", "-")

        def ratio(k):
            return f"{s[k] / p[k]:.2f}" if k in s and k in p else "-"

        print(f"| {case} | {dt} | {cell(s, 'median_s')} | {cell(p, 'median_s')} "
              f"| {ratio('median_s')} | {ratio('min_s')} | {ratio('cpu_median_s')} "
              f"| {cell(s, 'peak_rss_bytes', 2**20, '{:.0f}')} "
              f"| {cell(p, 'peak_rss_bytes', 2**20, '{:.0f}')} | {ratio('peak_rss_bytes')} |")
        if case == "adapters" and "without_median_s" in s and "without_median_s" in p:
            print(f"| adapters (without) | {dt} | {s['without_median_s']:.3f} "
                  f"| {p['without_median_s']:.3f} "
                  f"| {s['without_median_s'] / p['without_median_s']:.2f} "
                  f"| {s['without_min_s'] / p['without_min_s']:.2f} | | | | |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
