"""Studio budgets picked from a measured front (`variant studio --front`): the shipped
supernet's front of docs/reproduction/front, on the built-in model."""

import copy
import json
from pathlib import Path

import pytest

from variant import load_model
from variant.pretrained import read_model_config
from variant.sampling.settings import SamplingConfig
from variant.studio import ModelInfo, Request, Studio

FRONT = json.loads((Path(__file__).resolve().parents[2] / "docs/reproduction/front/front.json")
                   .read_text())


@pytest.fixture(scope="module")
def model():
    return load_model("builtin")


def _studio(model, front=FRONT, **kw):
    var, vae = model
    info = ModelInfo(source="builtin", meta=read_model_config("builtin")[2])
    return Studio(var, vae, info, max_images=8, front=front, **kw)


def test_a_kv_budget_runs_the_best_measured_configuration_within_it(model):
    # 3 images hold 3/16 of the front's KV (measured at batch 16): 1 MiB admits the rows of at
    # most 5.33 MiB there: d4+cfgstop4 (FID 4.87 at 5.12 MiB) beats d2+cfgstop4 (6.61), the
    # pruned ones (7.61 and more); everything better holds more KV
    studio = _studio(model)
    comparison = studio.compare(Request(num_images=3, sampling=SamplingConfig(seed=1),
                                        configurations=("d2", "KV under 1 MiB")))
    plain, chosen = comparison.outcomes
    assert (plain.name, plain.how) == ("d2", "plan")
    assert chosen.name == "d4+cfgstop4" and not chosen.levers.is_neutral
    assert chosen.levers.get("cfg_stop") == 4 and chosen.plan.name == "d4"
    assert chosen.how.startswith("KV ≤ 1.00 MiB → d4+cfgstop4 (measured on the front: fid 4.87 "
                                 "(4.38–5.36) over 5 seeds; ")
    assert chosen.how.endswith("for 3 images, scaled from its batch of 16)")
    # the front's KV scales exactly with the batch, and the run keeps within the budget
    assert chosen.kv_peak_bytes == 5373952 * 3 // 16 <= 2**20
    assert "front" in studio.describe()


def test_a_budget_at_other_sampling_settings_is_refused_but_a_plan_is_not(model):
    studio = _studio(model)
    unguided = SamplingConfig(seed=0, cfg=0.0)
    with pytest.raises(ValueError, match=r"cfg 0.0 \(the front: 1.5\).*give a plan instead"):
        studio.compare(Request(num_images=1, sampling=unguided,
                               configurations=("KV under 1 MiB",)))
    plan = Request(num_images=1, sampling=unguided, configurations=("d2",))
    outcome, = studio.compare(plan).outcomes
    assert outcome.name == "d2"


def test_latencies_from_another_thread_count_are_refused_unless_allowed(model):
    # the module runs on one thread (conftest); the front was timed with 2
    with pytest.raises(ValueError, match="measured on .* 2 threads.*--allow-other-device.*"
                                         "KV budget"):
        _studio(model).compare(Request(num_images=1, configurations=("best under 100 ms",)))
    # allowed: every configuration fits 100 ms for one image; the best FID is full+kv1,2 (4.44)
    outcome, = _studio(model, allow_other_device=True).compare(
        Request(num_images=1, configurations=("best under 100 ms",))).outcomes
    assert outcome.name == "full+kv1,2"


def test_a_budget_nothing_meets_names_the_cheapest(model):
    with pytest.raises(ValueError, match=r"budget 'KV under 10 KiB': nothing fits the budget: "
                                         r"even the cheapest, \S+, needs KV \d+ KiB > 10\.0 KiB"):
        _studio(model).compare(Request(num_images=1, configurations=("KV under 10 KiB",)))


def test_a_front_of_another_model_is_refused(model):
    other = copy.deepcopy(FRONT)
    other["meta"]["depth"] = 16
    with pytest.raises(ValueError, match=r"another architecture \(builtin: depth 16 \(this "
                                         r"model: 8\)\); give the front"):
        _studio(model, front=other)
    wider = copy.deepcopy(FRONT)
    wider["meta"]["width"] = 256  # fronts written since record the width and patch sizes
    with pytest.raises(ValueError, match=r"width 256 \(this model: 128\)"):
        _studio(model, front=wider)
