"""`variant studio`: serve VARiant Studio, a local web page comparing configurations side by side.

    variant studio                               # the built-in model, http://127.0.0.1:7860
    variant studio --model var_d30.pth --device cuda --port 8000 --profile profile.json
    variant studio --front docs/reproduction/front/front.json   # budgets pick measured configs

Needs the optional `studio` extra (Gradio): pip install -e ".[studio]".
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading

import torch

from ..efficiency.budget import load_profile
from ..front import check_front_weights, load_front
from ..pretrained import read_model_config, resolve_source
from ..studio.compare import Studio
from ..studio.request import ModelInfo, default_memory_budget
from ..units import fmt_bytes
from . import checks
from .common import add_model_args, add_weights_arg, load_from_args, weights_args

INSTALL_HINT = ('VARiant Studio needs the optional Gradio dependency: pip install -e ".[studio]" '
                "(from a checkout of the repository).")


def register(sub) -> None:
    p = sub.add_parser(
        "studio", help="local web page: configurations side by side, with their costs",
        description="Serve VARiant Studio: pick classes, settings and up to four configurations "
                    "(plans or budgets) and see their grids from the same seed side by side, with "
                    "measured time, peak KV, FLOPs and savings vs the full network. Prints the "
                    "URL; opens no browser. Needs the 'studio' extra.")
    add_model_args(p)
    add_weights_arg(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 serves "
                        "the network, without authentication)")
    p.add_argument("--port", type=checks.port, default=7860, help="port (default 7860)")
    p.add_argument("--max-images", type=checks.count, default=16,
                   help="most images per configuration a request may ask for (default 16)")
    p.add_argument("--max-memory", type=checks.size, default=None,
                   help="refuse requests whose predicted peak memory exceeds this, e.g. 8GiB "
                        "(default: the GPU's memory, or on CPU the memory available at start)")
    p.add_argument("--profile", type=checks.input_file, default=None,
                   help="latency profile from `variant bench --profile` for 'best under ...' "
                        "budgets (default: measured on this machine when first needed)")
    p.add_argument("--front", type=checks.input_file, default=None,
                   help="a `variant tune` front.json of this model: budget entries then pick its "
                        "best measured configuration (levers included) instead of the deepest "
                        "plan predicted to fit, e.g. docs/reproduction/front/front.json")
    p.add_argument("--allow-other-model", action="store_true",
                   help="with --front: use a front measured on other weights than --model's")
    p.add_argument("--allow-other-device", action="store_true",
                   help="with --front: use latencies measured on another device or thread count")
    p.set_defaults(func=run)


def import_app():
    """The Gradio layer, or a ValueError naming the install command when Gradio is missing."""
    try:
        return importlib.import_module("variant.studio.app")
    except ImportError as err:
        if (err.name or "").split(".")[0] != "gradio":
            raise
        raise ValueError(INSTALL_HINT) from None


def model_meta(source: str, revision: str | None) -> dict:
    """The `meta` of a model directory (class names, subnet depths, bridge); {} otherwise."""
    if resolve_source(source, revision=revision, hub_files=("config.json",)).kind == "official":
        return {}  # an official .pth carries no meta (and reading it again would be slow)
    return read_model_config(source, revision=revision)[2]


def run(args: argparse.Namespace) -> int:
    app = import_app()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's startup self-checks
    if args.allow_other_device and args.front is None:
        raise ValueError("--allow-other-device applies to a front's latencies; give --front "
                         "front.json too.")
    profile = load_profile(args.profile) if args.profile else None
    front = load_front(args.front) if args.front else None
    if args.allow_other_model and front is None:
        raise ValueError("--allow-other-model applies to a front; give --front front.json too.")
    var, vae = load_from_args(args)
    note = None if front is None else check_front_weights(front, var, vae,
                                                          args.allow_other_model)
    info = ModelInfo(source=args.model, vae=args.vae, revision=args.revision,
                     meta=model_meta(args.model, args.revision), model_args=weights_args(var))
    budget = args.max_memory or default_memory_budget(torch.device(args.device))
    studio = Studio(var, vae, info, max_images=args.max_images, max_memory=budget,
                    profile=profile, front=front, allow_other_device=args.allow_other_device)
    print(f"VARiant Studio: {studio.describe()}; memory budget {fmt_bytes(budget)}", flush=True)
    if front is not None and front["meta"]["model"] != args.model:
        print(f"note: the front was measured on model {front['meta']['model']}, this studio serves "
              f"{args.model}; budgets pick by that model's measurements.", flush=True)
    if note:
        print(note, flush=True)
    print("warming up (the full network once, timed for latency budgets)...", flush=True)
    studio.warm_up()
    if not checks.is_loopback(args.host):
        print(f"warning: --host {args.host} serves the studio to every machine that can reach "
              "this one, without authentication; use --host 127.0.0.1 for this machine only.",
              file=sys.stderr, flush=True)
    server = app.serve(studio, args.host, args.port)
    print(f"serving at {server.url} (Ctrl+C stops)", flush=True)
    signal.signal(signal.SIGTERM, _exit)  # `kill` stops it as cleanly as Ctrl+C
    try:
        threading.Event().wait()
    finally:
        server.close()  # stops serving and removes the downloads folder
    return 0


def _exit(signum, frame) -> None:
    raise SystemExit(0)
