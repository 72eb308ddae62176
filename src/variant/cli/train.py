"""`variant train`: supernet training (also under `torchrun --nproc_per_node=N -m variant train`).

Flags: `--preset NAME` plus one `--flag` per `TrainConfig` field (generated from the dataclass,
so the defaults live in one place). A run directory that already holds checkpoints is resumed;
with no `--preset`, its saved config is the base the flags override.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from ..jsonfile import read_json
from ..training.checkpoint import CONFIG_FILE
from ..training.config import TRAIN_PRESETS, TrainConfig, train_preset
from ..training.parallel import init_distributed, shutdown
from ..training.trainer import NonFiniteLossError, Trainer
from . import checks

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train an elastic-depth supernet (fine-tune a VAR or from scratch)",
        description="Train a VAR as an elastic-depth supernet with the progressive dynamic "
                    "ratio. Single process, or torchrun for DDP/FSDP2. Rerunning the same "
                    "command resumes from the last checkpoint in --out-dir.")
    p.add_argument("--preset", choices=sorted(TRAIN_PRESETS), default=None,
                   help="named configuration the flags below override (required for a new run)")
    p.add_argument("--resume", default="auto",
                   help="'auto': continue from the latest checkpoint in --out-dir if any; or a "
                        "checkpoints/step-* directory")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as JSON and exit")
    group = p.add_argument_group("configuration (TrainConfig fields; default: the preset's)")
    for f in dataclasses.fields(TrainConfig):
        _add_field(group, f)
    p.set_defaults(func=run)


def _add_field(group, f: dataclasses.Field) -> None:
    flag = "--" + f.name.replace("_", "-")
    help_text = f.metadata.get("help", "")
    default = f.default
    if isinstance(default, bool):
        group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)
    elif isinstance(default, tuple):
        item = type(default[0]) if default else int
        group.add_argument(flag, dest=f.name, type=_tuple_of(item), default=None,
                           metavar="A,B,...", help=help_text)
    else:
        group.add_argument(flag, dest=f.name, type=checks.scalar(type(default)), default=None,
                           help=help_text)


def _tuple_of(item: type):
    one = checks.scalar(item)  # finite, of bounded length

    def parse(text: str) -> tuple:
        try:
            return tuple(one(x) for x in text.replace(" ", "").split(",") if x)
        except (ValueError, argparse.ArgumentTypeError) as err:
            raise argparse.ArgumentTypeError(f"expected comma-separated {item.__name__} values, "
                                             f"got {text!r} ({err})") from None
    return parse


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if getattr(args, f.name, None) is not None}
    if args.preset:
        return train_preset(args.preset).replace(**overrides)
    saved = Path(overrides.get("out_dir", "")) / CONFIG_FILE if "out_dir" in overrides else None
    if saved is None or not saved.is_file():
        raise ValueError(f"choose a --preset ({', '.join(sorted(TRAIN_PRESETS))}) for a new run, "
                         "or pass the --out-dir of an existing run to resume it.")
    saved_config = read_json(saved, "saved run config", hint="fix it or start a new --out-dir")
    return TrainConfig.from_dict(saved_config).replace(**overrides)


def run(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    if args.print_config:
        print(config.to_json())
        return 0
    env = init_distributed(config.device)
    try:
        result = Trainer(config, env=env, resume=args.resume).fit()
    except NonFiniteLossError as err:
        print(f"variant train: error: {err}", file=sys.stderr)
        return 3
    finally:
        shutdown(env)
    if env.is_main:
        if result.final_model is not None:
            print(f"trained {result.step}/{result.total_steps} steps; model directory: "
                  f"{result.final_model} (try: variant sample --model {result.final_model})")
        else:
            print(f"stopped by {result.stopped_by} at step {result.step}/{result.total_steps}; "
                  f"checkpoint {result.checkpoint}. Rerun the same command to resume.")
    return 0
