"""Does running several requests' rows in one sampler call pay, and does it keep their bytes?

`variant serve` runs each request of a batch as its own sampler call (its printed command's
call). The alternative is one call over all rows of the batch (per-image random streams keyed
by each request's seed and image index, so the tokens are the requests' own). This measures,
for `--requests` requests of `--images` images under each configuration: images/s both ways
(median of `--repeats` alternating rounds) and how many images' PNG bytes the joint call
changes against the per-request calls.

    python benchmarks/serve_batching.py --threads 1 --requests 4 --images 1 4 \
        --out docs/serving/batching.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

import variant
from variant.atomic import write_text_atomic
from variant.images import png_bytes, to_uint8
from variant.sampling.configuration import Configuration
from variant.sampling.sampler import generate
from variant.sampling.settings import SamplingConfig


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="builtin")
    p.add_argument("--configurations", nargs="+", default=["full", "d2+cfgstop4"])
    p.add_argument("--requests", type=int, default=4)
    p.add_argument("--images", type=int, nargs="+", default=[1, 4], help="images per request")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def per_request(var, config, requests):
    out = []
    for seed, labels in requests:
        res = generate(var, len(labels), torch.tensor(labels), configuration=config,
                       image_keys=[(seed, j) for j in range(len(labels))])
        out += [png_bytes(a) for a in to_uint8(res.images)]
    return out


def joint(var, config, requests):
    labels = [label for _, ls in requests for label in ls]
    keys = [(seed, j) for seed, ls in requests for j in range(len(ls))]
    res = generate(var, len(labels), torch.tensor(labels), configuration=config,
                   image_keys=keys)
    return [png_bytes(a) for a in to_uint8(res.images)]


def measure(var, config, requests, repeats: int) -> dict:
    runs = {"per_request": [], "joint": []}
    pngs = {}
    for name, fn in (("per_request", per_request), ("joint", joint)):
        pngs[name] = fn(var, config, requests)  # warm-up, and the bytes
    for _ in range(repeats):
        for name, fn in (("per_request", per_request), ("joint", joint)):
            start = time.perf_counter()
            fn(var, config, requests)
            runs[name].append(time.perf_counter() - start)
    images = sum(len(ls) for _, ls in requests)
    seconds = {k: statistics.median(v) for k, v in runs.items()}
    return {"configuration": config.name, "images": images,
            "per_request_images_per_s": images / seconds["per_request"],
            "joint_images_per_s": images / seconds["joint"],
            "joint_speedup": seconds["per_request"] / seconds["joint"],
            "images_whose_png_differs": sum(a != b for a, b in zip(pngs["per_request"],
                                                                   pngs["joint"]))}


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    var, _ = variant.load_model(args.model)
    settings = SamplingConfig(rng="per-image")
    load = os.getloadavg()
    results = []
    for size in args.images:
        requests = [(100 + r, [(r * size + j) % var.num_classes for j in range(size)])
                    for r in range(args.requests)]
        for spec in args.configurations:
            config = Configuration.resolve(spec, var.depth, var.patch_nums, settings)
            results.append({"images_per_request": size,
                            **measure(var, config, requests, args.repeats)})
            r = results[-1]
            print(f"{size} images/request, {r['configuration']}: per request "
                  f"{r['per_request_images_per_s']:.1f} img/s, joint "
                  f"{r['joint_images_per_s']:.1f} img/s ({r['joint_speedup']:.2f}x); joint "
                  f"changes {r['images_whose_png_differs']}/{r['images']} PNGs", flush=True)
    report = {"model": args.model, "requests": args.requests,
              "threads": args.threads, "repeats": args.repeats, "load_average_before": load,
              "load_average_after": os.getloadavg(), "results": results}
    if args.out:
        write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
