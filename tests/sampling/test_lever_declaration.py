"""A lever is declared once: a toy lever declared in this file alone is parsed from a spec,
accepted as a flag, listed in --help, round-tripped through `cli_args` and a printed command, named
by the tune grid's families, counted by the cost model, and run by the sampler with the measured
KV peak equal to the prediction; nothing else in the package is touched.
"""

import json
import re
import shlex

import pytest

from variant.cli.common import sampling_from_args
from variant.cli.main import build_parser, main
from variant.config import VARConfig
from variant.front import FRONT_FORMAT, tune
from variant.models.cost import CostModel
from variant.pretrained import random_model
from variant.sampling.configuration import Configuration, parse_configuration
from variant.sampling.lever import LEVERS, Lever, declared
from variant.sampling.settings import SamplingConfig

SCALES = (1, 2, 4, 8)  # 1 + 4 + 16 + 64 tokens


class Thin(Lever):
    """Toy: from scale K on, every second position runs the layers (a token hook only)."""

    name, spec_syntax, metavar, flag_type = "toy_thin", "thinK", "K", int
    spec = re.compile(r"^thin(\d+)$", re.IGNORECASE)
    help = "toy lever: from scale K on half of the positions run; e.g. --toy-thin 2"
    example, families = "d2+thin2", ("thinning",)

    def read(self, value):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise ValueError(f"toy_thin must be a scale index >= 0, got {value!r}; e.g. 2.")
        return value

    def spec_part(self, values):
        return None if values[self.name] is None else f"thin{values[self.name]}"

    def normalise(self, value, context):
        return None if value is None or value >= context.num_scales else value

    def tokens(self, value, scale_index, num_tokens):
        return num_tokens if scale_index < value else max(1, num_tokens // 2)


@pytest.fixture
def thin():
    with declared(Thin()) as lever:
        yield lever
    assert "toy_thin" not in LEVERS


def test_parsed_from_a_spec_with_a_canonical_name(thin):
    assert parse_configuration("d2+thin2") == ("d2", {"toy_thin": 2})
    config = Configuration.resolve("d2+cfgstop3+thin2", 4, SCALES, SamplingConfig())
    assert config.levers.get("toy_thin") == 2 and config.settings.toy_thin == 2
    assert config.name == "d2+cfgstop3+thin2"  # declaration order: after the built-in levers
    again = Configuration.resolve(config.name, 4, SCALES, SamplingConfig())
    assert again.levers == config.levers
    neutral = Configuration.resolve("full+thin4", 4, SCALES, SamplingConfig())
    assert neutral.levers.is_neutral and neutral.name == "full"  # K = 4: it thins nothing
    with pytest.raises(ValueError, match="thinK"):  # the spec help lists it
        parse_configuration("d2+thinner")


def test_a_flag_with_help_that_round_trips_through_cli_args(thin, capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    assert "--toy-thin K" in capsys.readouterr().out
    parser = build_parser()
    settings = sampling_from_args(parser.parse_args(["sample", "--toy-thin", "2", "--seed", "1"]))
    assert settings.toy_thin == 2 and settings.lever_values == (("toy_thin", 2),)
    args = settings.cli_args()
    assert args[-2:] == ["--toy-thin", "2"]
    assert sampling_from_args(parser.parse_args(["sample", *args])) == settings
    assert SamplingConfig(**{**settings.to_dict()}) == settings  # JSON form too
    with pytest.raises(TypeError, match="toy_thin"):  # unknown names list the levers
        SamplingConfig(toy_thick=2)


def test_a_printed_command_carries_it(thin, tmp_path, capsys):
    """`variant plan --front` prints the `variant sample` line of a front measured with it."""
    settings = SamplingConfig(toy_thin=1)
    quality = {"fid": {"mean": 5.0, "low": 4.0, "high": 6.0}}
    cost = {"total_s": 0.1, "total_q1_s": 0.1, "total_q3_s": 0.1, "kv_peak_bytes": 1000,
            "peak_memory_bytes": None, "gflops_per_image": 1.0}
    front = {"format": FRONT_FORMAT, "version": 1, "rows": [
        {"spec": "d2", "family": "depth", "plan": "d2", "quality": quality, "cost": cost,
         "on_front": {"latency": True, "kv": True, "memory": None}}],
        "meta": {"model": "random:tiny", "device_name": "x", "threads": 1, "bench_batch": 2,
                 "seeds": [0, 1], "num_per_class": 2, "num_classes": 2, "metric": "builtin",
                 "metric_key": "fid", "settings": settings.to_dict(), "depth": 4,
                 "num_scales": 3}}
    path = tmp_path / "front.json"
    path.write_text(json.dumps(front))
    assert main(["plan", "--front", str(path), "--max-kv", "1MiB"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    argv = shlex.split(printed)
    assert argv[:2] == ["variant", "sample"] and "--toy-thin" in argv
    assert sampling_from_args(build_parser().parse_args(argv[1:])).toy_thin == 1


def test_named_by_the_tune_families(thin):
    assert tune.family("full+thin2") == "thinning" and "thinning" in tune.families()
    assert tune.family("d2+thin2") == "combination"


def test_counted_by_the_cost_model(thin):
    config_ = VARConfig(depth=4, embed_dim=64, num_heads=4, V=32, Cvae=8, patch_nums=SCALES)
    cost = CostModel(config_, "fp32", rows=2)
    plain = Configuration.resolve("full", 4, SCALES, SamplingConfig())
    thinned = Configuration.resolve("full+thin3", 4, SCALES, SamplingConfig())
    # scale 3 (64 positions) runs 32 in each of the 4 layers; token-layers per sequence:
    assert cost.token_layers(plain.plan, plain.levers) == 4 * (1 + 4 + 16 + 64)
    assert cost.token_layers(thinned.plan, thinned.levers) == 4 * (1 + 4 + 16 + 32)
    assert cost.flops(thinned.plan, levers=thinned.levers) < cost.flops(plain.plan,
                                                                      levers=plain.levers)
    # the last scale's keys/values are never kept: thinning it leaves the peak where the
    # bridge's keys and values are, and the cost model says so exactly
    one = CostModel(config_, "fp32", rows=2)
    early = Configuration.resolve("full+thin1", 4, SCALES, SamplingConfig())
    assert one.kv_peak_bytes(early.plan, early.levers) < one.kv_peak_bytes(plain.plan,
                                                                          plain.levers)


def test_run_by_the_sampler_with_the_predicted_kv(thin):
    """Its token hook runs through the sampler's pivotal positions, like pruning."""
    var, _ = random_model("tiny", "cpu", seed=0)  # scales (1, 2, 4)
    plain = var.generate(2, [0, 1], seed=4)
    thinned = var.generate(2, [0, 1], seed=4, toy_thin=1)
    assert thinned.levers.get("toy_thin") == 1 and thinned.levers.sizes(var.patch_nums) == [
        1, 2, 8]
    assert [i.shape for i in thinned.indices] == [i.shape for i in plain.indices]
    predicted = CostModel(var.config, "fp32", rows=4).kv_peak_bytes(thinned.plan,
                                                                    thinned.levers)
    assert thinned.kv_peak_bytes == predicted < plain.kv_peak_bytes
