"""Predicted transformer seconds of plans and levers from the latency profile recorded in
docs/levers/speed_d16.json (`efficiency.budget.transformer_seconds`): a refactor keeps them.

    python scripts/latency_predictions.py > after.txt
"""

import json
from pathlib import Path

from variant.config import PATCH_NUMS_256
from variant.efficiency.budget import transformer_seconds
from variant.sampling.configuration import resolve_configurations
from variant.sampling.settings import SamplingConfig

RECORD = Path(__file__).resolve().parents[1] / "docs" / "levers" / "speed_d16.json"
SPECS = ["full", "d16", "d8", "d4", "d2", "full+cfgstop8", "d8+cfgstop8+prune0.5@8",
         "full+kv1,2", "full+guide=d2", "d4+autoguide=d2", "d8+cfgstop8"]

if __name__ == "__main__":
    profile = json.loads(RECORD.read_text())["meta"]["profile"]
    settings = SamplingConfig(dtype=profile["settings"]["dtype"])
    for c in resolve_configurations(SPECS, 16, PATCH_NUMS_256, settings):
        print(c.name, repr(transformer_seconds(profile, c.plan, c.levers, PATCH_NUMS_256)))
