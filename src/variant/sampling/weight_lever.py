"""The weight precision lever: `weights='int8' | 'fp8'`, spec parts `w8` and `wfp8`.

Declared once like the other levers (sampling/lever.py), but it acts when the model is loaded,
not in the sampler: the transformer's linear layers hold quantised weights
(variant/precision.py), shared by every subnet and lever. A configuration that names it therefore
needs a model loaded at that precision: the commands load it so (`--weights int8` or a spec with
`w8`; `variant tune` and `bench` keep one copy per precision their configurations name), and
`variant.load_model(source, weights='int8')` does it in Python. Sampling a `w8` configuration on
a model of other weights is a ValueError naming the fix (nothing is quantised behind the
caller's back: a silent copy would hold both sets of weights). Neutral (None) means the model's
weights as loaded.
"""

from __future__ import annotations

import re

from ..precision import PRECISIONS, read_precision, weight_precision
from .lever import Lever, declare

SPEC_PARTS = {"int8": "w8", "fp8": "wfp8"}


class Weights(Lever):
    name, spec_syntax, metavar, choices = "weights", "w8, wfp8", None, PRECISIONS
    spec = re.compile(r"^w(8|fp8)$", re.IGNORECASE)
    help = ("weight-only quantisation of the transformer's linear layers at load (torchao, "
            "extra 'quant'): int8 (cpu, cuda) or fp8 (cuda, compute capability >= 8.9); "
            "e.g. --weights int8")
    example, families, acts_at_load = "d8+w8", ("weight precision",), True

    def read(self, value):
        return read_precision(value)

    def parse_part(self, part):
        m = self.spec.match(part)
        if m is None:
            return None
        return {self.name: "int8" if m.group(1) == "8" else "fp8"}

    def spec_part(self, values):
        value = values[self.name]
        return None if value is None else SPEC_PARTS[value]

    def grid(self, num_scales, subnets):
        # int8 runs everywhere; fp8 needs a GPU that has it, so it is given by hand there
        return {"full": ["w8"], "deepest": ["w8"]}

    def check_model(self, value, model):
        have = weight_precision(model)
        if have != value:
            held = f"{have} weights" if have else "full-precision weights"
            raise ValueError(f"this configuration runs on {value} weights but the model holds "
                             f"{held}; load it with variant.load_model(source, weights="
                             f"{value!r}) (command line: --weights {value}), or drop "
                             f"'{SPEC_PARTS[value]}' / weights={value!r}.")


WEIGHTS = declare(Weights())
