"""Open-loop load on a running `variant serve`: Poisson arrivals at a list of rates.

Each rate sends requests at exponentially distributed intervals (seeded) whether or not the
earlier ones were answered, for at most `--duration` seconds and `--max-requests` requests,
then waits for every answer (each bounded by `--timeout`). Per rate it reports throughput,
latency percentiles of the requests answered with images, the share of all sent requests
answered with images within the SLO, 429s, other errors, and
lost = sent - answered - refused (requests that got no HTTP answer at all: must be 0), plus
the configurations served and their mean front quality. One thread (asyncio).

    variant serve --front docs/reproduction/front/front.json --slo 2s --threads 1 --port 8000 &
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --configuration auto \
        --rates 2 4 6 --duration 30 --slo 2 --out auto.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections import Counter

import httpx

from variant.atomic import write_text_atomic


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--rates", type=float, nargs="+", required=True, help="requests per second")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of arrivals per rate")
    p.add_argument("--max-requests", type=int, default=1000, help="requests per rate at most")
    p.add_argument("--configuration", default="auto", help="configuration every request asks for")
    p.add_argument("--images", type=int, default=4, help="images per request")
    p.add_argument("--slo", type=float, required=True, help="seconds, for the share within it")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds one request may take")
    p.add_argument("--seed", type=int, default=0, help="arrival times and request seeds")
    p.add_argument("--api-key-file", default=None)
    p.add_argument("--pause", type=float, default=5.0,
                   help="seconds between rates (the server's queue empties)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if any(r <= 0 for r in args.rates) or args.duration <= 0 or args.max_requests < 1:
        p.error("rates, --duration and --max-requests must be positive")
    return args


async def one_request(client: httpx.AsyncClient, body: dict, timeout: float) -> dict:
    start = time.perf_counter()
    try:
        r = await client.post("/v1/images", json=body, timeout=timeout)
    except httpx.HTTPError as err:
        return {"status": None, "error": f"{type(err).__name__}: {err}",
                "seconds": time.perf_counter() - start}
    out = {"status": r.status_code, "seconds": time.perf_counter() - start}
    if r.status_code == 200:
        data = r.json()
        out.update(configuration=data["configuration"], images=len(data["images"]),
                   quality=(data["quality"] or {}).get("mean"))
    else:
        out["error"] = r.text[:200]
    return out


async def run_rate(client: httpx.AsyncClient, rate: float, args, rng: random.Random) -> dict:
    tasks, start = [], time.perf_counter()
    next_at = 0.0
    while len(tasks) < args.max_requests:
        next_at += rng.expovariate(rate)
        if next_at > args.duration:
            break
        await asyncio.sleep(max(0.0, start + next_at - time.perf_counter()))
        body = {"num_images": args.images, "seed": rng.randrange(2**31),
                "configuration": args.configuration}
        tasks.append(asyncio.create_task(one_request(client, body, args.timeout)))
    results = await asyncio.gather(*tasks)
    return summarize(rate, results, time.perf_counter() - start, args.slo)


def summarize(rate: float, results: list[dict], wall: float, slo: float) -> dict:
    ok = [r for r in results if r["status"] == 200]
    refused = sum(r["status"] == 429 for r in results)
    answered = sum(r["status"] is not None and r["status"] != 429 for r in results)
    latencies = sorted(r["seconds"] for r in ok)
    qualities = [r["quality"] for r in ok if r["quality"] is not None]
    sent = len(results)
    return {
        "rate": rate, "sent": sent, "answered": answered, "with_images": len(ok),
        "refused_429": refused, "errors": answered - len(ok),
        "lost": sent - answered - refused, "wall_s": wall,
        "throughput_images_per_s": sum(r["images"] for r in ok) / wall,
        "p50_s": _quantile(latencies, 0.50), "p95_s": _quantile(latencies, 0.95),
        "p99_s": _quantile(latencies, 0.99),
        "within_slo": sum(s <= slo for s in latencies) / sent if sent else None,
        "answered_with_images": len(ok) / sent if sent else None,
        "configurations": dict(Counter(r["configuration"] for r in ok).most_common()),
        "mean_quality": statistics.fmean(qualities) if qualities else None,
        "error_samples": sorted({r["error"] for r in results if r.get("error")})[:3],
    }


def _quantile(sorted_values: list[float], q: float) -> float | None:
    """The q-quantile by the nearest rank (None without values)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 1))  # ceil(n q), at least 1
    return sorted_values[int(rank) - 1]


async def main_async(args) -> dict:
    headers = {}
    if args.api_key_file:
        with open(args.api_key_file) as f:
            headers["Authorization"] = f"Bearer {f.read().strip()}"
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    rng = random.Random(args.seed)
    runs = []
    async with httpx.AsyncClient(base_url=args.url, headers=headers, limits=limits) as client:
        info = (await client.get("/v1/configurations")).json()
        for i, rate in enumerate(args.rates):
            if i:
                await asyncio.sleep(args.pause)
            run = await run_rate(client, rate, args, rng)
            print(f"rate {rate:g}/s: sent {run['sent']}, images {run['with_images']}, 429 "
                  f"{run['refused_429']}, errors {run['errors']}, lost {run['lost']}, p95 "
                  f"{_fmt(run['p95_s'])}, within SLO {run['within_slo']:.1%}, "
                  f"{run['configurations']}", flush=True)
            runs.append(run)
    return {"url": args.url, "configuration": args.configuration, "images": args.images,
            "slo_s": args.slo, "duration_s": args.duration, "max_requests": args.max_requests,
            "seed": args.seed, "server_slo_s": info.get("slo_s"),
            "load_average_before": os.getloadavg(), "runs": runs,
            "command": " ".join(["python", *sys.argv])}


def _fmt(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.2f}s"


def main(argv=None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()
    report = asyncio.run(main_async(args))
    report["load_average_before"], report["load_average_after"] = load, os.getloadavg()
    if args.out:
        write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
    return 1 if any(r["lost"] for r in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
