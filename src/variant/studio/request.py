"""What one Generate click asks for, and the page's limits: `Request`, read from the form.

`ModelInfo` says where the model came from (for the command lines the page prints).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..efficiency.bench import current_rss_bytes
from ..sampling.settings import SamplingConfig

MAX_CONFIGURATIONS = 4
MAX_REPEATS = 5
DEFAULT_IMAGES = 4


@dataclass(frozen=True)
class ModelInfo:
    """Where the model came from (for command lines) and what its directory says about it."""

    source: str = "builtin"
    vae: str | None = None
    revision: str | None = None
    meta: dict = field(default_factory=dict)
    model_args: list = field(default_factory=list)  # e.g. ['--weights', 'int8']


@dataclass(frozen=True, kw_only=True)
class Request:
    """One Generate click. `classes`: ids or names (none: random classes from the seed)."""

    classes: tuple = ()
    num_images: int = 4
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(seed=0))
    configurations: tuple[str, ...] = ("full",)
    repeats: int = 1  # timed runs per configuration

    def __post_init__(self) -> None:
        if self.sampling.seed is None:
            raise ValueError("a studio request needs a seed (its images are reproducible).")


def request_from_form(classes, num_images, seed, cfg, top_k, top_p, dtype, repeats,
                      *configurations) -> Request:
    """A `Request` from the page's fields (numbers may come as floats or strings)."""
    sampling = SamplingConfig(seed=_whole(seed, "seed"), cfg=_number(cfg, "cfg"),
                              top_k=_whole(top_k, "top-k"), top_p=_number(top_p, "top-p"),
                              dtype=str(dtype))
    return Request(classes=tuple(classes or ()), num_images=_whole(num_images, "number of images"),
                   sampling=sampling, repeats=_whole(repeats, "timed runs"),
                   configurations=tuple(str(c or "") for c in configurations))


def _number(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    return number


def _whole(value, name: str) -> int:
    number = _number(value, name)
    if number != int(number):
        raise ValueError(f"{name} must be a whole number, got {value!r}.")
    return int(number)


def default_memory_budget(device: torch.device) -> int | None:
    """What this process may use: the GPU's memory, or on CPU the memory available now plus
    what the process already holds (None when the system does not say)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1]
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    return available + current_rss_bytes()


def describe_error(err: BaseException) -> str:
    """The message the page shows for a failed request."""
    if isinstance(err, ValueError):
        return str(err)
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return ("the device ran out of memory for this request; use fewer images, a cheaper "
                "configuration or bf16 (the studio keeps serving).")
    return f"the request failed ({type(err).__name__}: {err}); the studio keeps serving."
