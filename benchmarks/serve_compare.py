"""Fixed `full` vs `auto` under the same open-loop load: the measurement of docs/SERVING.md.

Each mode gets its own `variant serve` (the built-in model, the committed front, the SLO, one
torch thread, default limits) on loopback, warmed up with three requests; at each rate in turn
benchmarks/serve_load.py drives one server and then the other with its mode's configuration
(so both meet the same machine: other processes' load drifts). The servers are stopped with
SIGTERM and must exit 0. Writes load_full.json, load_auto.json, load.png (p95 vs
rate for both, and the configurations auto served at each rate) and prints a table.

    python benchmarks/serve_compare.py --rates 2 4 6 7 8 9 --duration 45 --slo 2 \
        --out docs/serving
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from variant.atomic import write_text_atomic

HERE = Path(__file__).resolve().parent
FRONT = HERE.parent / "docs" / "reproduction" / "front" / "front.json"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", type=float, nargs="+", required=True)
    p.add_argument("--duration", type=float, default=45.0)
    p.add_argument("--max-requests", type=int, default=1000)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--slo", type=float, default=2.0)
    p.add_argument("--modes", nargs="+", default=["full", "auto"])
    p.add_argument("--front", default=str(FRONT))
    p.add_argument("--pause", type=float, default=5.0, help="seconds between runs")
    p.add_argument("--out", default="docs/serving")
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, port: int, log: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "variant", "serve", "--front", args.front, "--slo",
            f"{args.slo}s", "--threads", "1", "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("variant serve did not start:\n" + log.read_text())


def warm_up(url: str, mode: str, images: int) -> None:
    for seed in range(3):  # first calls, and auto's first corrections
        httpx.post(url + "/v1/images", json={"num_images": images, "seed": seed,
                                             "configuration": mode}, timeout=60)


def load_run(args, url: str, mode: str, rate: float, out: Path) -> dict:
    path = out / f".load_{mode}_{rate:g}.json"
    subprocess.run([sys.executable, str(HERE / "serve_load.py"), "--url", url,
                    "--configuration", mode, "--images", str(args.images), "--slo",
                    str(args.slo), "--duration", str(args.duration), "--max-requests",
                    str(args.max_requests), "--rates", str(rate), "--seed", str(int(rate * 1000)),
                    "--out", str(path)], check=True)
    report = json.loads(path.read_text())
    path.unlink()
    return report


def run_all(args, out: Path) -> dict:
    """One server per mode, alive together; the modes take turns at each rate, so both meet
    the same machine (other processes' load drifts over minutes)."""
    servers, reports = {}, {}
    logs = Path(tempfile.mkdtemp(prefix="serve-compare-"))
    try:
        for mode in args.modes:
            port = free_port()
            servers[mode] = (start_server(args, port, logs / f"server_{mode}.log"),
                             f"http://127.0.0.1:{port}")
            warm_up(servers[mode][1], mode, args.images)
        for rate in args.rates:
            for mode in args.modes:
                report = load_run(args, servers[mode][1], mode, rate, out)
                if mode not in reports:
                    reports[mode] = {**report, "runs": []}
                reports[mode]["runs"] += report["runs"]
                reports[mode]["load_average_after"] = report["load_average_after"]
                time.sleep(args.pause)
    finally:
        codes = {}
        for mode, (proc, _) in servers.items():
            proc.send_signal(signal.SIGTERM)
            codes[mode] = proc.wait(60)
    assert all(code == 0 for code in codes.values()), f"server exit codes {codes}"
    for mode, report in reports.items():
        report["command"] = " ".join(["python", *sys.argv])
        report["rates"] = args.rates
        write_text_atomic(out / f"load_{mode}.json", json.dumps(report, indent=2) + "\n")
    return reports


def table(reports: dict) -> str:
    lines = ["| mode | rate /s | sent | with images | 429 | errors | lost | p50 s | p95 s | "
             "p99 s | within SLO | mean FID | configurations |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for mode, report in reports.items():
        for r in report["runs"]:
            mix = ", ".join(f"{k} {v}" for k, v in r["configurations"].items())
            lines.append(
                f"| {mode} | {r['rate']:g} | {r['sent']} | {r['answered_with_images']:.1%} | "
                f"{r['refused_429']} | {r['errors']} | {r['lost']} | {_f(r['p50_s'])} | "
                f"{_f(r['p95_s'])} | {_f(r['p99_s'])} | {r['within_slo']:.1%} | "
                f"{_f(r['mean_quality'])} | {mix} |")
    return "\n".join(lines)


def _f(x) -> str:
    return "—" if x is None else f"{x:.2f}"


def plot(reports: dict, slo: float, images: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    for mode, report in reports.items():
        runs = report["runs"]
        top.plot([r["rate"] for r in runs], [r["p95_s"] for r in runs], "o-",
                 label=f"{mode}: p95 latency")
    top.axhline(slo, color="grey", ls="--", label=f"SLO {slo:g} s")
    top.axhline(2 * slo, color="grey", ls=":", label="2 x SLO")
    top.set_yscale("log")
    values = [r["p95_s"] for rep in reports.values() for r in rep["runs"] if r["p95_s"]]
    low, high = min([*values, slo]) / 1.3, max([*values, 2 * slo]) * 1.3
    top.set_ylim(low, high)
    top.set_yticks([t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64) if low <= t <= high])
    top.yaxis.set_major_formatter(ScalarFormatter())
    top.yaxis.set_minor_formatter(NullFormatter())
    top.set_ylabel("p95 latency, arrival to answer (s, log scale)")
    top.legend(loc="upper left", fontsize=8)
    top.set_title("variant serve, built-in model, CPU with 1 torch thread: fixed full vs auto",
                  fontsize=10)
    runs = reports["auto"]["runs"]
    specs = sorted({s for r in runs for s in r["configurations"]})
    width = 0.6 * min((b["rate"] - a["rate"] for a, b in zip(runs, runs[1:])), default=1)
    rates, base = [r["rate"] for r in runs], [0.0] * len(runs)
    colors = plt.get_cmap("tab20").colors
    parts = [(spec, [r["configurations"].get(spec, 0) for r in runs], colors[i % 20])
             for i, spec in enumerate(specs)]
    parts.append(("refused (429)", [r["refused_429"] for r in runs], "lightgrey"))
    for name, counts, color in parts:
        share = [c / max(1, r["sent"]) for c, r in zip(counts, runs)]
        bottom.bar(rates, share, width, bottom=base, label=name, color=color)
        base = [b + s for b, s in zip(base, share)]
    for r in runs:
        if r["mean_quality"] is not None:
            bottom.text(r["rate"], 1.02, f"FID {r['mean_quality']:.2f}", ha="center",
                        fontsize=7)
    bottom.set_ylim(0, 1.12)
    bottom.set_ylabel("auto: share of requests")
    bottom.set_xlabel(f"offered load (requests/s, Poisson arrivals; {images} images each)")
    bottom.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reports = run_all(args, out)
    print(table(reports))
    if "auto" in reports:
        plot(reports, args.slo, args.images, out / "load.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
