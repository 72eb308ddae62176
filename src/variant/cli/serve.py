"""`variant serve`: an HTTP image server that trades depth for latency under load.

    variant serve                                  # the built-in model, http://127.0.0.1:8000
    variant serve --front docs/reproduction/front/front.json --slo 2s   # enables `auto`
    variant serve --ray --replicas 2               # the same service on Ray Serve

Needs the optional `serve` extra: pip install -e ".[serve]" (Ray: ".[serve,ray]").
"""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path

from ..serve.schema import Limits
from . import checks
from .common import add_model_args, add_weights_arg

INSTALL_HINT = ('`variant serve` needs the optional serve dependencies: pip install -e '
                '".[serve]" (from a checkout of the repository).')
RAY_HINT = '`variant serve --ray` needs Ray Serve: pip install -e ".[serve,ray]".'


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="HTTP image server; `auto` trades depth for latency under load",
        description="Serve POST /v1/images, GET /v1/configurations, /healthz, /readyz and "
                    "/metrics. With --front and --slo, requests may ask for configuration "
                    "'auto': each batch runs the best front configuration whose predicted time "
                    "keeps the queue within the SLO. Needs the 'serve' extra.")
    add_model_args(p)
    add_weights_arg(p)
    d = Limits()
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only); any other "
                        "needs --api-key-file, or --insecure")
    p.add_argument("--port", type=checks.port, default=8000, help="port (default 8000)")
    p.add_argument("--api-key-file", default=None,
                   help="file holding the API key: requests then need 'Authorization: Bearer "
                        "KEY' (all routes but /healthz and /readyz)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host without an API key")
    p.add_argument("--front", default=None,
                   help="a `variant tune` front.json of this model, e.g. "
                        "docs/reproduction/front/front.json: configurations, costs, quality")
    p.add_argument("--slo", type=checks.duration, default=None,
                   help="latency objective of `auto` requests, arrival to answer, e.g. 2s "
                        "(needs --front); requests it cannot meet get 429 with Retry-After")
    p.add_argument("--max-batch", type=checks.count, default=d.max_batch,
                   help=f"images per batch (default {d.max_batch})")
    p.add_argument("--max-wait", type=checks.wait, default=d.max_wait,
                   help=f"how long the oldest request waits for its batch to fill (default "
                        f"{d.max_wait * 1000:g}ms)")
    p.add_argument("--max-images", type=checks.count, default=d.max_images,
                   help=f"images per request (default {d.max_images})")
    p.add_argument("--max-queue", type=checks.count, default=d.max_queue,
                   help=f"requests waiting before new ones get 429 (default {d.max_queue})")
    p.add_argument("--max-body", type=checks.size, default=d.max_body_bytes,
                   help=f"request body bytes (default {d.max_body_bytes // 1024}KiB)")
    p.add_argument("--max-memory", type=checks.size, default=None,
                   help="refuse requests predicted to need more, e.g. 8GiB (default: the GPU's "
                        "memory, or on CPU the memory available at start)")
    p.add_argument("--threads", type=checks.count, default=None,
                   help="torch CPU threads (default: torch's); printed in each response's "
                        "`variant sample` command")
    p.add_argument("--drain-timeout", type=checks.duration, default=30.0,
                   help="on SIGTERM, how long the running batch may take to finish (default 30s)")
    p.add_argument("--ray", action="store_true",
                   help="run as a Ray Serve deployment (local Ray instance; extra 'ray')")
    p.add_argument("--replicas", default="1",
                   help="Ray Serve replicas, each with its own model and queue (with --ray): N, "
                        "or MIN-MAX for Ray's autoscaling (default 1)")
    p.set_defaults(func=run)


def read_api_key(path: str | None, host: str, insecure: bool) -> str | None:
    """The API key, or None; ValueError when a non-loopback host has neither key nor
    --insecure, or the key file is unreadable or empty."""
    if path is None:
        if not checks.is_loopback(host) and not insecure:
            raise ValueError(f"--host {host} serves beyond this machine: give --api-key-file "
                             "KEYFILE (clients send 'Authorization: Bearer KEY'), or --insecure "
                             "to serve without authentication.")
        return None
    try:
        key = Path(path).read_text().strip()
    except OSError as err:
        raise ValueError(f"cannot read --api-key-file {path} ({err.strerror}).") from None
    if len(key) < 16:
        raise ValueError(f"the API key in {path} is {len(key)} characters; use at least 16 "
                         "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`).")
    return key


def options_from_args(args: argparse.Namespace):
    from ..serve.service import ServeOptions

    if args.slo is not None and args.front is None:
        raise ValueError("--slo applies to `auto`, which picks from a front: give --front "
                         "front.json too (e.g. docs/reproduction/front/front.json).")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}.")
    if args.replicas != "1" and not args.ray:
        raise ValueError("--replicas applies to --ray; without it one process serves.")
    limits = Limits(max_images=args.max_images, max_body_bytes=args.max_body,
                    max_queue=args.max_queue, max_batch=args.max_batch, max_wait=args.max_wait)
    return ServeOptions(model=args.model, vae=args.vae, revision=args.revision,
                        device=args.device, seed=args.seed, front=args.front, slo=args.slo,
                        limits=limits, max_memory=args.max_memory, threads=args.threads,
                        weights=args.weights)


def run(args: argparse.Namespace) -> int:
    api_key = read_api_key(args.api_key_file, args.host, args.insecure)
    options = options_from_args(args)
    if args.ray:
        try:
            ray_app = importlib.import_module("variant.serve.ray_app")
        except ImportError as err:
            if (err.name or "").split(".")[0] not in ("ray", "fastapi", "uvicorn"):
                raise
            raise ValueError(RAY_HINT) from None
        return ray_app.run(options, replicas=args.replicas, host=args.host, port=args.port,
                           api_key=api_key)
    try:
        app = importlib.import_module("variant.serve.app")
    except ImportError as err:
        if (err.name or "").split(".")[0] not in ("fastapi", "uvicorn", "prometheus_client",
                                                  "starlette"):
            raise
        raise ValueError(INSTALL_HINT) from None
    from ..serve.service import build_service

    service = build_service(options)
    auto = (f"; auto over {len(service.policy.ranked)} front configurations, SLO "
            f"{service.policy.slo:g}s" if service.policy else "")
    logging.getLogger(__name__).info("loaded %s on %s%s", args.model, args.device, auto)
    url = f"http://{args.host}:{args.port}"
    app.run_http(service, host=args.host, port=args.port, api_key=api_key,
                 drain_timeout=args.drain_timeout,
                 on_ready=lambda: print(f"variant serve: ready at {url} (SIGTERM or Ctrl+C "
                                        "drains and stops)", flush=True))
    return 0
