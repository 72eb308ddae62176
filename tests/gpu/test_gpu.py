"""GPU checks that cannot rot: each runs on CPU here (CI) and on CUDA when present (marked `gpu`,
skipped without CUDA). The logic lives once, in gpu_checks.py, as functions of the device."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_checks  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])
DEVICES = ["cpu", CUDA]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("device", DEVICES)
def test_low_precision_sampling_agrees_with_fp32(device, dtype):
    gpu_checks.check_low_precision_sampling(device, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_kv_peak_equals_the_cost_model(device):
    gpu_checks.check_kv_peak_matches_cost_model(device)


@pytest.mark.parametrize("device", DEVICES)
def test_seeded_sampling_repeats(device):
    gpu_checks.check_seeded_determinism(device)


@pytest.mark.parametrize("fsdp", [False, True], ids=["plain", "fsdp2-world1"])
@pytest.mark.parametrize("device", DEVICES)
def test_two_bf16_training_steps_and_resume(device, fsdp):
    gpu_checks.check_bf16_training_steps(device, fsdp)


@pytest.mark.parametrize("device", DEVICES)
def test_sampling_memory_below_official_by_the_kv_saving(device, request, tmp_path):
    official = request.config.getoption("--official")
    if official is None:
        pytest.skip("needs --official DIR, a FoundationVision/VAR checkout")
    gpu_checks.check_memory_below_official(device, official, tmp_path)
