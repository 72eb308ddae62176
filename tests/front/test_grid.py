"""`variant tune`'s default grid, the lever families, folder names and the settings' checks."""


import pytest

import variant.front.tune as tune
from variant.front.tune import TuneSettings, default_grid, family
from variant.sampling.configuration import folder_name

MIB = 2**20


# ---------------------------------------------------------------------- grid and families
def test_default_grid_depth8_six_scales():
    grid = default_grid(8, 6, (4, 2))
    assert grid == [
        # depth plans
        "full", "d4", "d2",
        # each lever alone on the full network: cfg-stop and pruning on the last two scales
        # (0-based scale 4 of 6), guide plans from the shallowest subnet, KV retention 1,2,
        # keys/values stored in int8, int8 weights
        "full+cfgstop4", "full+guide=d2", "full+autoguide=d2", "full+prune0.5@4", "full+kv1,2",
        "full+kv8", "full+w8",
        # combinations
        "d4+cfgstop4", "d4+prune0.5@4", "d4+cfgstop4+prune0.5@4",
        "d2+cfgstop4", "d2+prune0.5@4", "d2+cfgstop4+prune0.5@4",
        # on the deepest subnet: autoguidance by the shallowest, int8 keys/values, int8 weights
        "d4+autoguide=d2", "d4+kv8", "d4+w8",
    ]
    # the order of --subnets, duplicates and out-of-range depths do not matter
    assert default_grid(8, 6, [2, 4, 4, 1, 8, 9]) == grid
    assert len(set(grid)) == len(grid)


def test_default_grid_small_cases():
    # four scales: no KV retention; one subnet: no autoguided subnet (it would guide itself)
    grid = default_grid(4, 4, [2])
    assert "full+kv1,2" not in grid
    assert grid[:3] == ["full", "d2", "full+cfgstop2"]
    assert not any(s.startswith("d2+autoguide") for s in grid)


@pytest.mark.parametrize("subnets", [(), (1,), (8,), (9, 12)])
def test_default_grid_without_a_subnet_names_the_flag(subnets):
    with pytest.raises(ValueError, match="--subnets") as err:
        default_grid(8, 6, subnets)
    assert "2..7" in str(err.value)


@pytest.mark.parametrize("spec, expected", [
    ("full", "depth"),
    ("d4", "depth"),
    ("full+cfgstop4", "cfg-stop"),
    ("full+guide=d2", "guide plan"),
    ("full+autoguide=d2", "autoguidance"),
    ("full+prune0.5@4", "pruning"),
    ("full+kv1,2", "KV retention"),
    ("full+kv8", "KV precision"),
    ("full+kvfp8@2", "KV precision"),
    ("d4+kv8", "combination"),
    ("d4+cfgstop4", "combination"),
    ("full+cfgstop4+prune0.5@4", "combination"),
    ("d4+autoguide=d2", "combination"),
])
def test_family(spec, expected):
    assert family(spec) == expected
    assert expected in tune.families()


def test_every_grid_spec_has_a_family():
    families = {family(s) for s in default_grid(8, 6, (4, 2))}
    assert families == set(tune.families())


def test_slug():
    assert folder_name("d2+cfgstop4+prune0.5@4") == "d2+cfgstop4+prune0.5@4"
    assert folder_name("full+kv1,2") == "full+kv1,2"
    odd = folder_name('{"layers": [[0, 1]]}')
    assert odd.startswith("custom-") and len(odd) == len("custom-") + 10
    assert odd == folder_name('{"layers": [[0, 1]]}') != folder_name('{"layers": [[0, 2]]}')


def test_tune_settings_validation():
    with pytest.raises(ValueError, match="distinct --seeds"):
        TuneSettings(seeds=(0, 0))
    with pytest.raises(ValueError, match="distinct --seeds"):
        TuneSettings(seeds=())
    with pytest.raises(ValueError, match="--warmup >= 0"):
        TuneSettings(warmup=-1)
    with pytest.raises(ValueError, match="--repeats"):
        TuneSettings(repeats=0)
