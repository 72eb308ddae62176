"""The body of `POST /v1/images`, read and checked; and the server's limits.

    {"labels": [3, "circle"], "num_images": 4, "seed": 0, "configuration": "d4+cfgstop4",
     "cfg": 1.5, "top_k": 900, "top_p": 0.96, "more_smooth": false, "dtype": "fp32",
     "rng": "per-image"}

Every field is optional. `labels`: class ids or names, one per image in turn (none: random
classes drawn from the seed, as `variant sample` draws them); `num_images` defaults to the
number of labels (or 1); `configuration`: a configuration spec (`d8+cfgstop8`) or `auto`
(default when the server has a front, else `full`); the sampling settings default to the
front's (else the official ones). Nothing in a body names a file: the server reads no path a
client gives.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from ..sampling.settings import RNG_STREAMS, SamplingConfig
from ..studio.classes import labels_for, resolve_classes

AUTO = "auto"
MAX_SEED = 2**63 - 1
MAX_SPEC_CHARS = 2000  # a JSON list of per-scale layer lists of a deep model fits


class RequestError(Exception):
    """A request the server answers with `status` and `message` (and maybe Retry-After)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


@dataclass(frozen=True, kw_only=True)
class Limits:
    """What one request and the queue may hold (flags of `variant serve`)."""

    max_images: int = 16  # per request
    max_body_bytes: int = 64 * 1024
    max_queue: int = 64  # requests waiting (not running)
    max_batch: int = 16  # images per batch
    max_wait: float = 0.01  # seconds the oldest request waits for a batch to fill

    def __post_init__(self) -> None:
        for name in ("max_images", "max_body_bytes", "max_queue", "max_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got "
                                 f"{getattr(self, name)}.")
        if self.max_images > self.max_batch:
            raise ValueError(f"--max-images ({self.max_images}) must not exceed --max-batch "
                             f"({self.max_batch}): a request runs within one batch.")
        if not 0 <= self.max_wait <= 10:
            raise ValueError(f"--max-wait must be 0..10 seconds, got {self.max_wait}.")


@dataclass(frozen=True)
class ImageRequest:
    """A checked request: one class per image, its seed, configuration and settings."""

    labels: tuple[int, ...]
    seed: int
    configuration: str  # a spec, or AUTO
    settings: SamplingConfig  # seed included

    @property
    def num_images(self) -> int:
        return len(self.labels)

    @property
    def is_auto(self) -> bool:
        return self.configuration == AUTO


_FIELDS = {"labels", "num_images", "seed", "configuration", "cfg", "top_k", "top_p",
           "more_smooth", "dtype", "rng"}


def parse_request(body: bytes, *, class_names: tuple[str, ...], limits: Limits,
                  defaults: SamplingConfig, default_configuration: str) -> ImageRequest:
    """The request in `body`; RequestError(400) naming the problem and the fix otherwise."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(400, f"the body is not JSON ({err}); send an object such as "
                                '{"labels": [3], "num_images": 1}.') from None
    if not isinstance(data, dict):
        raise RequestError(400, "the body must be a JSON object such as "
                                f'{{"labels": [3], "num_images": 1}}, got {type(data).__name__}.')
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise RequestError(400, f"unknown field(s) {', '.join(map(repr, unknown))}; the fields "
                                f"are {', '.join(sorted(_FIELDS))}.")
    seed = _integer(data, "seed", 0, 0, MAX_SEED)
    classes = _labels(data.get("labels"), class_names)
    default_num = len(classes) if classes else 1
    num = _integer(data, "num_images", default_num, 1, None)
    if num > limits.max_images:
        raise RequestError(400, f"num_images {num} is over this server's limit of "
                                f"{limits.max_images} images per request (--max-images); "
                                "split the request.")
    spec = data.get("configuration", default_configuration)
    if not isinstance(spec, str) or not spec.strip() or len(spec) > MAX_SPEC_CHARS:
        raise RequestError(400, "configuration must be a non-empty spec such as 'd4+cfgstop4' "
                                f"or 'auto' (at most {MAX_SPEC_CHARS} characters).")
    settings = _settings(data, defaults, seed)
    labels = labels_for(classes, num, len(class_names), seed)
    return ImageRequest(tuple(labels), seed, spec.strip(), settings)


def _labels(value, class_names: tuple[str, ...]) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
            isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)) for v in value):
        raise RequestError(400, "labels must be a list of class ids or names, e.g. [3, "
                                f"{class_names[0]!r}].")
    try:
        return resolve_classes(value, class_names)
    except ValueError as err:
        raise RequestError(400, f"labels: {err}") from None


def _integer(data: dict, key: str, default: int, low: int, high: int | None) -> int:
    value = data.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (
            high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise RequestError(400, f"{key} must be an integer {bound}, got {value!r}.")
    return value


def _settings(data: dict, defaults: SamplingConfig, seed: int) -> SamplingConfig:
    changes = {"seed": seed, "rng": data.get("rng", RNG_STREAMS[1])}
    for key, kind in (("cfg", float), ("top_k", int), ("top_p", float), ("more_smooth", bool),
                      ("dtype", str)):
        if key not in data:
            continue
        value = data[key]
        ok = isinstance(value, bool) if kind is bool else (
            isinstance(value, str) if kind is str else
            isinstance(value, (int, float)) and not isinstance(value, bool) and (
                kind is float or float(value).is_integer()) and math.isfinite(value))
        if not ok:
            raise RequestError(400, f"{key} must be {kind.__name__}, got {value!r}.")
        changes[key] = kind(value)
    try:
        return defaults.replace(**changes)
    except (ValueError, TypeError) as err:
        raise RequestError(400, f"bad sampling settings: {err}") from None
