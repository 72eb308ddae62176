"""What an inference lever is, and the one registry of them (the levers themselves: levers.py).

A lever is declared once, as a `Lever` subclass registered with `declare`. Everything that names
levers is derived from the registry, in declaration order: the lever fields of `SamplingConfig`
and the keywords of `var.generate`, the configuration spec's parts (sampling/configuration.py),
the command-line flags with their help and their `cli_args` form (what child processes and printed
commands get), the tune grid and its families, and the work the cost and latency models count
(sampling/work.py). A declaration says:

- `name`: the settings field, the `generate` keyword and, dashed, the flag (`--name`);
  `neutral`: the value that changes nothing (the default);
- `read(value)`: a Python, flag or spec value -> the canonical value (ValueError naming the fix);
  `show(value)`: the canonical value as flag text (`read(show(v)) == v`); `to_json(value)`;
- `spec`: a regular expression for its part of a configuration spec (`spec_part` formats it back);
  `parse_part(part)` may set several fields (autoguidance sets the guide plan and its class);
- `flag_type`, `metavar`, `choices`, `help` (ending with an example) for the command line;
- `families`, `family(values)`: its name in fronts; `grid(...)`: what `variant tune` tries;
- `resolve(value, shape)`: values naming plans become plans of the model's shape;
- `normalise(value, context)`: check against the model and plan; the neutral value when the setting
  changes nothing there (so neutral settings run exactly the plain sampler);
- the hooks by which it changes the work: `groups` (which rows run which scales under which
  plan), `tokens` (positions of a scale that run the layers: the sampler runs the pivotal ones
  and restores the rest, sampling/levers.py), `visible` (which earlier scales a scale attends
  to: the sampler then uses the chunked cache), `storage` (the format a scale's keys/values are
  stored in: None, the compute dtype, or an 8-bit format of sampling/kv_quant.py; the caches
  store and count them so). A hook a lever does not override changes nothing.
- `acts_at_load`: the lever changes the model a call runs on (its weights' precision), not the
  work: set alone it leaves the plain sampler's one row group; `check_model(value, model)` then
  says (ValueError naming the fix) when the model given does not have it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .plan import DepthPlan
    from .work import Group


@dataclass(frozen=True)
class PlanShape:
    """What a lever value that names a plan is resolved against: the model's depth and scales."""

    depth: int
    patch_nums: tuple[int, ...]
    bridge: int | None = None  # of bare 'dN' plan specs (None: the default)

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)


@dataclass
class LeverContext:
    """What `Lever.normalise` checks a value against: the model's scales, the plan, whether
    guidance is on, and the levers normalised so far (declaration order)."""

    patch_nums: tuple[int, ...]
    plan: DepthPlan
    guided: bool
    values: dict  # name -> normalised value of the levers before this one

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)


class Lever:
    """One inference lever (module docstring). Subclasses set the attributes, override hooks."""

    name: str = ""
    neutral: Any = None
    spec: re.Pattern | None = None  # group 1: the value text
    spec_syntax: str = ""  # how the spec part is written, e.g. 'cfgstopK'
    flag_type: Any = str
    metavar: str | None = None
    choices: tuple | None = None
    help: str = ""
    example: str = ""  # a spec example of this lever on a plan, e.g. 'd8+cfgstop8'
    families: tuple[str, ...] = ()
    guides: bool = False  # changes the guiding rows: needs guidance on (cfg > 0)
    acts_at_load: bool = False  # changes the model's weights, not the sampler's work

    # ------------------------------------------------------------------ values
    def read(self, value: Any) -> Any:
        return value

    def show(self, value: Any) -> str:
        return str(value)

    def to_json(self, value: Any) -> Any:
        return value

    def label(self, value: Any) -> str:
        """The setting as named in messages: the name, or name='value' for a choice."""
        return f"{self.name}={value!r}" if self.choices else self.name

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    # ------------------------------------------------------------------ spec parts
    def parse_part(self, part: str) -> dict | None:
        """The fields a spec part sets, or None when the part is not this lever's."""
        m = self.spec.match(part) if self.spec is not None else None
        return None if m is None else {self.name: self.read(self.flag_type(m.group(1)))}

    def spec_part(self, values: Mapping[str, Any]) -> str | None:
        """This lever's part of a canonical spec (None: it has none, or it is neutral)."""
        return None

    # ------------------------------------------------------------------ fronts
    def family(self, values: Mapping[str, Any]) -> str | None:
        """Its family name in fronts when it is set (None: it names no family)."""
        return self.families[0] if self.families else None

    def grid(self, num_scales: int, subnets: Sequence[int]) -> dict[str, list[str]]:
        """Spec parts `variant tune` tries by default: 'full' (on the full network),
        'subnets' (on each subnet, alone and joined), 'deepest' (on the deepest subnet)."""
        return {}

    # ------------------------------------------------------------------ per model and plan
    def resolve(self, value: Any, shape: PlanShape) -> Any:
        return value

    def normalise(self, value: Any, context: LeverContext) -> Any:
        return value

    # ------------------------------------------------------------------ the work
    def groups(self, value: Any, groups: list[Group], context: LeverContext) -> list[Group]:
        return groups

    def tokens(self, value: Any, scale_index: int, num_tokens: int) -> int:
        return num_tokens

    def visible(self, value: Any, source: int, scale_index: int) -> bool:
        return True

    def storage(self, value: Any, scale_index: int) -> str | None:
        return None

    def check_model(self, value: Any, model) -> None:
        """A load-time lever: ValueError unless `model` runs with `value` (not neutral)."""

    def overrides(self, hook: str) -> bool:
        """Whether this lever has its own `hook` ('groups', 'tokens', 'visible', 'storage')."""
        return getattr(type(self), hook) is not getattr(Lever, hook)


LEVERS: dict[str, Lever] = {}


def declare(lever: Lever) -> Lever:
    """Register a lever (its name must be new); returns it."""
    if not lever.name.isidentifier() or lever.name in LEVERS:
        raise ValueError(f"a lever needs a new identifier as its name, got {lever.name!r}.")
    LEVERS[lever.name] = lever
    return lever


@contextlib.contextmanager
def declared(lever: Lever) -> Iterator[Lever]:
    """A lever registered for the duration of a block (tests declare toy levers this way)."""
    declare(lever)
    try:
        yield lever
    finally:
        del LEVERS[lever.name]


def read_levers(given: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical values of lever settings by name; TypeError for a name no lever has."""
    unknown = [k for k in given if k not in LEVERS]
    if unknown:
        raise TypeError(f"unknown lever setting(s) {', '.join(map(repr, unknown))}; the levers "
                        f"are {', '.join(LEVERS)}.")
    return {k: LEVERS[k].read(v) for k, v in given.items()}


def spec_syntax() -> str:
    """How lever parts are written ('cfgstopK, ... and kvFIRST,RECENT'), for messages."""
    syntax = [lever.spec_syntax for lever in LEVERS.values() if lever.spec_syntax]
    return ", ".join(syntax[:-1]) + " and " + syntax[-1] if len(syntax) > 1 else "".join(syntax)
