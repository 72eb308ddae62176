"""Arguments shared by the subcommands that take a model."""

from __future__ import annotations

import argparse

import torch

from ..precision import weight_precision
from ..pretrained import BUILTIN, load_model
from ..sampling.configuration import EXAMPLE, Configuration, parse_configuration
from ..sampling.lever import LEVERS
from ..sampling.plan import DepthPlan
from ..sampling.settings import RNG_STREAMS, SamplingConfig
from ..units import DTYPES
from . import checks


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=BUILTIN,
        help="model directory (config.json + safetensors), official var_d*.pth, Hugging Face Hub "
             "id, 'builtin' (the model shipped with the package, default) or 'random:PRESET' "
             "(randomly initialised, e.g. random:tiny, random:var-d16)")
    parser.add_argument("--vae", default=None,
                        help="VQVAE checkpoint for an official .pth model (default: "
                             "vae_ch160v4096z32.pth next to it)")
    parser.add_argument("--revision", default=None,
                        help="branch, tag or commit of a Hugging Face Hub model (default: main)")
    parser.add_argument("--device", type=checks.device,
                        default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--seed", type=checks.seed, default=0, help="random seed")


def add_plan_args(parser: argparse.ArgumentParser, multiple: bool = False) -> None:
    help_plan = ("depth plan: 'full', a subnet depth such as 'd8' (paper plan with --bridge), "
                 "'d8@bridge5', 'd8@r7-r10' (subnet at scales 7-10 only), or a JSON list of "
                 f"per-scale layer lists; levers may follow, joined by '+', e.g. {EXAMPLE} "
                 "(see the lever flags)")
    if multiple:
        parser.add_argument("--plans", nargs="+", default=None,
                            help=help_plan + "; several allowed (default: full and the paper's "
                                 "subnet depths that fit the model)")
    else:
        parser.add_argument("--plan", default="full", help=help_plan)
    parser.add_argument("--bridge", type=checks.natural, default=None,
                        help="scales in the bridge zone (full network) of 'dN' plans; default: "
                             "the paper's 6 of 10 scales, scaled to the model's number of scales")


def resolve_plan(spec: str, var, bridge: int | None) -> DepthPlan:
    return DepthPlan.from_spec(spec, var.depth, var.num_scales, bridge)


def resolve_configuration(spec: str, var_config, bridge: int | None,
                          settings: SamplingConfig) -> Configuration:
    """A plan spec with optional levers for a model's config (or the model)."""
    return Configuration.resolve(spec, var_config.depth, var_config.patch_nums, settings, bridge)


def load_from_args(args: argparse.Namespace, specs=()):
    """(var, vae) in eval mode on args.device, from --model / --vae / --revision / --seed, at
    the weight precision of `specs` (the configurations the command runs; `model_weights`)."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but no CUDA device is available; "
                         "use --device cpu.")
    # getattr: `analyze pareto --models` loads several models without add_model_args
    return load_model(args.model, args.vae, device=device,
                      revision=getattr(args, "revision", None), seed=args.seed,
                      weights=model_weights(args, specs))


def model_weights(args: argparse.Namespace, specs=()) -> str | None:
    """The weight precision to load the model at: the one --weights or every spec of `specs`
    names (`w8`, `wfp8`); None (as stored) when they name none, or several, or some name none
    (then `WeightCopies` quantises a copy per precision named)."""
    flag = getattr(args, "weights", None)
    named = {flag if flag is not None else parse_configuration(s)[1].get("weights")
             for s in specs} or {flag}
    return named.pop() if len(named) == 1 else None


def add_weights_arg(parser) -> None:
    """--weights alone, from its lever (commands without the lever flags: studio, serve)."""
    lever = LEVERS["weights"]
    parser.add_argument(lever.flag, dest=lever.name, default=None, choices=lever.choices,
                        help=lever.help)


def weights_args(var) -> list[str]:
    """The flag that loads a model at `var`'s weight precision, for printed commands."""
    weights = weight_precision(var)
    return [LEVERS["weights"].flag, weights] if weights else []


def add_sampling_args(parser, *, dtype: bool = True) -> None:
    """--cfg/--top-k/--top-p/--more-smooth(/--dtype), defaults from `SamplingConfig`."""
    d = SamplingConfig()
    parser.add_argument("--cfg", type=checks.float_in(0), default=d.cfg,
                        help=f"classifier-free guidance, 0: off (default {d.cfg})")
    parser.add_argument("--top-k", type=checks.natural, default=d.top_k,
                        help=f"top-k, 0: off (default {d.top_k})")
    parser.add_argument("--top-p", type=checks.float_in(0, 1), default=d.top_p,
                        help=f"top-p, 0: off (default {d.top_p})")
    parser.add_argument("--more-smooth", action="store_true",
                        help="Gumbel-softmax smoothing of the next-scale input (visual only)")
    parser.add_argument("--compile", action="store_true",
                        help="run each scale's step under torch.compile (static shapes per "
                             "scale; eager, with one log line, where compiling fails)")
    if dtype:
        parser.add_argument("--dtype", choices=sorted(DTYPES), default=d.dtype,
                            help=f"compute dtype (default {d.dtype})")
    parser.add_argument("--rng", choices=RNG_STREAMS, default=d.rng,
                        help="random stream: 'batch' (one per call, the official sampler's; "
                             "default) or 'per-image' (image i draws from its own stream of "
                             "(--seed, i): its tokens do not depend on the other images or on "
                             "--batch-size; `variant serve` uses it)")
    add_lever_args(parser)


def add_lever_args(parser) -> None:
    """One flag per declared inference lever (sampling/levers.py), with its help and example."""
    if not isinstance(parser, argparse.ArgumentParser):  # already a group: groups do not nest
        levers = parser
    else:
        levers = parser.add_argument_group(
            "inference levers", "off by default; they stack with any plan. Scales are 0-based "
                                "(K=10 at 256 px: 8 = the last two scales). The same levers may "
                                f"be joined to a plan spec, e.g. --plan {EXAMPLE}")
    for lever in LEVERS.values():
        levers.add_argument(lever.flag, dest=lever.name, type=checks.scalar(lever.flag_type),
                            default=None, metavar=lever.metavar, choices=lever.choices,
                            help=lever.help)


def sampling_from_args(args: argparse.Namespace, **changes) -> SamplingConfig:
    """The `SamplingConfig` of a command's flags (`changes` override, e.g. a per-chunk seed)."""
    fields = {"cfg": args.cfg, "top_k": args.top_k, "top_p": args.top_p,
              "more_smooth": getattr(args, "more_smooth", False),
              "dtype": getattr(args, "dtype", SamplingConfig().dtype),
              "seed": getattr(args, "seed", None),
              "rng": getattr(args, "rng", SamplingConfig().rng),
              "compile": getattr(args, "compile", False)}
    return SamplingConfig(**{**fields, **levers_from_args(args), **changes})


def given_levers(args: argparse.Namespace) -> list[str]:
    """The lever flags given, as flags."""
    return [LEVERS[k].flag for k in levers_from_args(args)]


def levers_from_args(args: argparse.Namespace) -> dict:
    """The lever flags given (absent ones keep `SamplingConfig`'s defaults)."""
    return {k: getattr(args, k) for k in LEVERS if getattr(args, k, None) is not None}
