"""Official VAR/VQVAE checkpoints: read them safely and infer their configuration.

The released files (`var_d16.pth` .. `var_d36.pth`, `vae_ch160v4096z32.pth`) are bare state
dicts under the official key names, which our modules share, so no key renaming is needed:
this module only recognises what a file is and builds the matching config.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..config import PATCH_NUMS_256, PATCH_NUMS_512, PATCH_NUMS_1024, VAEConfig, VARConfig

KNOWN_SCHEDULES = {sum(p * p for p in pn): pn for pn in (PATCH_NUMS_256, PATCH_NUMS_512,
                                                          PATCH_NUMS_1024)}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason and the likely fix."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a `.pth` or `.safetensors` state dict on CPU without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated downloads, HTML error pages, foreign pickles
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(err).__name__}: {str(err)[:200]}). The file "
            "may be truncated or not a PyTorch checkpoint; download it again."
        ) from err
    if isinstance(state, dict) and "trainer" in state and isinstance(state["trainer"], dict):
        state = state["trainer"].get("var_wo_ddp", state)  # official trainer checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path} is not a plain state dict (found {type(state).__name__}); pass the model "
            "weights file, e.g. var_d16.pth or vae_ch160v4096z32.pth."
        )
    return state


def _key_indices(state: dict[str, torch.Tensor], pattern: str) -> set[str]:
    """The distinct first groups of `pattern` matched at the start of the keys."""
    return {m.group(1) for k in state if (m := re.match(pattern, k))}


def _block_indices(state: dict[str, torch.Tensor]) -> list[int]:
    return sorted(int(i) for i in _key_indices(state, r"blocks\.(\d+)\."))


def _patch_nums_from_levels(state: dict[str, torch.Tensor]) -> tuple[int, ...] | None:
    """Scale sides from the `lvl_1L` buffer (scale index of every token), when it is present."""
    levels = state.get("lvl_1L")
    if levels is None or levels.device.type == "meta":
        return None
    counts = torch.bincount(levels.reshape(-1).long()).tolist()
    sides = tuple(round(c**0.5) for c in counts)
    return sides if all(s * s == c for s, c in zip(sides, counts)) else None


def var_config_from_state_dict(state: dict[str, torch.Tensor], **overrides) -> VARConfig:
    """Infer depth, width, heads, classes, vocab and scale schedule from VAR weights."""
    required = ("pos_1LC", "class_emb.weight", "word_embed.weight", "head.weight")
    missing = [k for k in required if k not in state]
    if missing:
        hint = " It looks like a VQVAE checkpoint." if "quantize.embedding.weight" in state else ""
        raise CheckpointError(f"not a VAR checkpoint: keys {missing} are missing.{hint}")
    blocks = _block_indices(state)
    depth = len(blocks)
    if blocks != list(range(depth)):
        raise CheckpointError(f"VAR checkpoint has gaps in its block indices: {blocks[:8]}...")
    width = state["pos_1LC"].shape[-1]
    L = state["pos_1LC"].shape[1]
    heads = state["blocks.0.attn.scale_mul_1H11"].shape[1] if (
        "blocks.0.attn.scale_mul_1H11" in state) else overrides.pop("num_heads", depth)
    patch_nums = overrides.pop("patch_nums", None) or _patch_nums_from_levels(state)
    patch_nums = patch_nums or KNOWN_SCHEDULES.get(L)
    if patch_nums is None:
        raise CheckpointError(
            f"VAR checkpoint has {L} tokens per image, which matches no known schedule "
            f"({sorted(KNOWN_SCHEDULES)}); pass patch_nums explicitly."
        )
    fields = dict(
        depth=depth, embed_dim=width, num_heads=heads,
        mlp_ratio=state["blocks.0.ffn.fc1.weight"].shape[0] / width,
        num_classes=state["class_emb.weight"].shape[0] - 1, V=state["head.weight"].shape[0],
        Cvae=state["word_embed.weight"].shape[1], patch_nums=tuple(patch_nums),
        shared_aln="shared_ada_lin.1.weight" in state,
        attn_l2_norm="blocks.0.attn.scale_mul_1H11" in state,
    )
    fields.update(overrides)
    return VARConfig(**fields)


def vae_config_from_state_dict(state: dict[str, torch.Tensor], patch_nums, **overrides):
    """Infer codebook size, channels, widths and Phi sharing from VQVAE weights."""
    if "quantize.embedding.weight" not in state or "encoder.conv_in.weight" not in state:
        hint = " It looks like a VAR checkpoint." if "pos_1LC" in state else ""
        raise CheckpointError(f"not a VQVAE checkpoint: quantizer/encoder keys are missing.{hint}")
    V, Cvae = state["quantize.embedding.weight"].shape
    ch = state["encoder.conv_in.weight"].shape[0]
    levels = sorted(int(i) for i in _key_indices(state, r"encoder\.down\.(\d+)\."))
    ch_mult = tuple(state[f"encoder.down.{i}.block.0.conv2.weight"].shape[0] // ch for i in levels)
    num_res = len(_key_indices(state, r"encoder\.down\.0\.block\.(\d+)\."))
    # Phi sharing, from the official key layout of each mode.
    if "quantize.quant_resi.qresi.weight" in state:
        share = 1  # one shared Phi
    elif "quantize.quant_resi.0.weight" in state:
        share = 0  # one Phi per scale
    else:
        share = len(_key_indices(state, r"quantize\.quant_resi\.qresi_ls\.(\d+)\."))
    overrides.setdefault("quant_resi", 0.5 if share or _has_phi(state) else 0.0)
    fields = dict(V=V, Cvae=Cvae, ch=ch, ch_mult=ch_mult, num_res_blocks=num_res,
                  share_quant_resi=share, patch_nums=tuple(patch_nums))
    fields.update(overrides)
    return VAEConfig(**fields)


def _has_phi(state: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith("quantize.quant_resi.") for k in state)


def explain_mismatch(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Raise a CheckpointError describing why `state` does not fit `model`, if it does not."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if not (missing or unexpected or wrong):
        return
    hints = []
    if "pos_1LC" in state and hasattr(model, "depth"):
        ckpt_depth = len(_block_indices(state))
        if ckpt_depth != model.depth:
            hints.append(f"this is a depth-{ckpt_depth} checkpoint but the model has depth "
                         f"{model.depth}")
        if state["pos_1LC"].shape[1] != model.L:
            hints.append(f"the checkpoint has {state['pos_1LC'].shape[1]} tokens per image but "
                         f"the model expects {model.L} (another resolution / patch_nums)")
    detail = "; ".join(hints) or (
        f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected "
        f"(e.g. {unexpected[:3]}), {len(wrong)} with other shapes (e.g. {wrong[:3]})")
    raise CheckpointError(f"{what} does not fit the model: {detail}. A model directory whose "
                          "config.json disagrees with its weights is damaged (re-save it); a "
                          "checkpoint loaded into a model built by hand needs the model its "
                          "configuration describes (variant.load_model(path) builds it).")
