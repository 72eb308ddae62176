"""Weight precision: weight-only quantisation of the transformer's linear layers (torchao).

`quantize_weights(var, "int8" | "fp8", device)` replaces, in place and once at load time, the
weights of every block's linear layers with torchao's quantised tensors (`Int8WeightOnlyConfig`:
int8 per output row, symmetric, a float32 scale and an int8 zero point per row;
`Float8WeightOnlyConfig`: float8 e4m3 per output row, a float32 scale per row). Activations stay
in the compute dtype: each matmul dequantises the weight (torchao's kernels; no matmul of ours).
Every subnet, plan and lever then runs on the same quantised weights, as they share the blocks.

Quantised (`QUANTISED`, per block): the attention's fused `mat_qkv` and `proj`, the MLP's `fc1`
and `fc2`, and the AdaLN modulation `ada_lin` (a third of a block's weights: 6 D^2 of 18 D^2; it
runs once per call on the class condition, so its rounding is a per-image error of the same
relative size as the others'). Kept in full precision, with the reason:
- the class embedding, `word_embed` (Cvae -> D) and the position/level embeddings: lookups and a
  tiny projection (under 1% of the bytes) that every token's value starts from;
- the head and its AdaLN (`head_nm`): the logits are sampled from (top-k, top-p cut at ranks
  and cumulative mass, where a rounding error changes which tokens survive), and at V x D they
  are a few percent of the bytes;
- the shared AdaLN projection of VAR-d36 (`shared_ada_lin`, one layer) and the blocks' biases;
- the VQVAE: convolutions (torchao's weight-only configs quantise linear layers) that decode the
  image once per call, after the transformer's KV cache is freed.

A quantised model saves and loads (variant.pretrained): each quantised weight is stored as its
plain inner tensors (`KEY.qdata`, `KEY.scale`, ...) in model.safetensors and the precision in
config.json; loading quantises a freshly built model the same way and copies them in.
torchao is an optional dependency (extra `quant`), imported on first use.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator

import torch
from torch import nn

PRECISIONS = ("int8", "fp8")
QUANTISED = ("attn.mat_qkv", "attn.proj", "ffn.fc1", "ffn.fc2", "ada_lin.1")
INSTALL = "pip install 'variant[quant]'"
FP8_CAPABILITY = (8, 9)  # float8 matmuls: Ada (sm_89) and Hopper (sm_90) or newer
# bytes per output row besides the data: float32 scale (+ int8 zero point for int8)
ROW_BYTES = {"int8": 4 + 1, "fp8": 4}


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence warnings of these loggers for a block: torchao's import logs a warning for every
    CUDA extension it cannot load (all of them on a CPU-only torch) and torch's pytree one about
    torchao's enum; neither concerns weight-only quantisation."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class MissingTorchao(ImportError, ValueError):
    """torchao is not installed (a ValueError too: commands report it as a bad option)."""


def torchao_quantization():
    """The `torchao.quantization` module; `MissingTorchao` saying how to install it."""
    try:
        with _quiet("torchao", "torch.utils._pytree"):
            import torchao.quantization as quantization
    except ImportError as err:
        raise MissingTorchao(f"quantised weights (--weights, spec parts w8/wfp8) need torchao, "
                             f"which is not installed: {INSTALL}.") from err
    return quantization


def read_precision(value) -> str | None:
    """None (full precision) or one of PRECISIONS; ValueError naming them."""
    if value is None or value in PRECISIONS:
        return value
    raise ValueError(f"weight precision must be one of {', '.join(PRECISIONS)} (or None: full "
                     f"precision), got {value!r}; e.g. weights='int8'.")


def supported_precisions(device: str | torch.device) -> tuple[str, ...]:
    """The weight precisions torchao has kernels for on `device`: int8 on CPU and CUDA, fp8 on
    CUDA of compute capability 8.9 or newer."""
    device = torch.device(device)
    if device.type == "cpu":
        return ("int8",)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return ("int8",)
        major_minor = torch.cuda.get_device_capability(device)
        return ("int8", "fp8") if major_minor >= FP8_CAPABILITY else ("int8",)
    return ()


def check_precision(precision: str | None, device: str | torch.device) -> None:
    """ValueError before any work when `device` cannot run `precision` (naming what it can);
    ImportError saying how to install torchao when it is missing."""
    precision = read_precision(precision)
    if precision is None:
        return
    supported = supported_precisions(device)
    if precision not in supported:
        kinds = ", ".join(supported) if supported else "none (use --device cpu or cuda)"
        need = (f"fp8 weights need a CUDA device of compute capability "
                f"{FP8_CAPABILITY[0]}.{FP8_CAPABILITY[1]} or newer (Ada, Hopper)"
                if precision == "fp8" else "torchao's int8 weight-only kernels run on cpu and cuda")
        raise ValueError(f"{need}; {torch.device(device)} supports: {kinds}. Choose a supported "
                         "precision (e.g. --weights int8) or drop it.")
    torchao_quantization()


def quantised_layers(var: nn.Module) -> list[tuple[str, nn.Linear]]:
    """(name, module) of every linear layer `quantize_weights` quantises, in model order."""
    wanted = {f"blocks.{i}.{suffix}" for i in range(len(var.blocks)) for suffix in QUANTISED}
    return [(n, m) for n, m in var.named_modules() if n in wanted and isinstance(m, nn.Linear)]


def quantize_weights(var: nn.Module, precision: str | None,
                     device: str | torch.device | None = None) -> nn.Module:
    """Quantise `var`'s block linears (module docstring) in place to `precision` (None: leave
    it); `device`: where it will run (default: where its weights are). Returns `var`."""
    precision = read_precision(precision)
    device = torch.device(device) if device is not None else next(var.parameters()).device
    check_precision(precision, device)
    if precision is None:
        return var
    current = weight_precision(var)
    if current is not None:
        raise ValueError(f"the model's weights are already {current}; load the full-precision "
                         f"model to quantise it to {precision}.")
    q = torchao_quantization()
    config = q.Int8WeightOnlyConfig() if precision == "int8" else q.Float8WeightOnlyConfig()
    layers = [m for _, m in quantised_layers(var)]
    chosen = {id(m) for m in layers}
    with _quiet("torchao"):
        q.quantize_(var, config, filter_fn=lambda module, _name: id(module) in chosen)
    # the attention calls its qkv weight directly (F.linear with its own bias): cast there
    for module in [*layers, *(block.attn for block in var.blocks)]:
        module.register_forward_pre_hook(_follow_autocast)
    return var


def _follow_autocast(module: nn.Module, args: tuple):
    """Cast a quantised layer's input to the autocast dtype, as autocast casts a linear's: the
    quantised weights are tensor subclasses autocast does not handle, and their matmul returns
    the input's dtype (an fp32 input would keep the layer, its keys and values, in fp32)."""
    x = args[0]
    kind = x.device.type
    if x.is_floating_point() and torch.is_autocast_enabled(kind):
        dtype = torch.get_autocast_dtype(kind)
        if x.dtype != dtype:
            return (x.to(dtype), *args[1:])
    return None


def weight_precision(model: nn.Module) -> str | None:
    """The precision of a model's quantised block weights: 'int8', 'fp8' or None (full)."""
    blocks = getattr(model, "blocks", None)
    if not blocks:
        return None
    weight = blocks[0].attn.mat_qkv.weight
    qdata = getattr(weight, "qdata", None)
    if qdata is None or not hasattr(weight, "__tensor_flatten__"):
        return None
    return "int8" if qdata.dtype == torch.int8 else "fp8"


def quantised_bytes(out_features: int, in_features: int, precision: str) -> int:
    """Bytes of one quantised weight (out, in): one byte per element plus its per-row scale
    (and zero point)."""
    return out_features * in_features + out_features * ROW_BYTES[precision]


class WeightCopies:
    """A model at every weight precision a set of configurations names: the loaded one (for
    the configurations that name none) and one quantised copy per precision, made on first use
    from the full-precision model and kept (the tokenizer is shared, not copied)."""

    def __init__(self, var: nn.Module):
        self.var = var
        self._copies: dict[str | None, nn.Module] = {weight_precision(var): var}

    def __call__(self, precision: str | None) -> nn.Module:
        if precision is None:
            return self.var
        if precision not in self._copies:
            have = weight_precision(self.var)
            if have is not None:
                raise ValueError(f"the model holds {have} weights; {precision} weights are "
                                 "quantised from a full-precision model: load one.")
            vae = self.var.__dict__.get("vae")
            twin = copy.deepcopy(self.var, memo={id(vae): vae} if vae is not None else None)
            self._copies[precision] = quantize_weights(twin, precision)
        return self._copies[precision]


# ---------------------------------------------------------------------- saving and loading
def inner_tensors(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """A torchao weight's plain tensors by attribute name (qdata, scale, ...)."""
    names = weight.__tensor_flatten__()[0]
    return {n: t for n in names if (t := getattr(weight, n)) is not None}


def plain_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict whose quantised weights become plain tensors `KEY.NAME` (safetensors holds
    plain tensors only)."""
    out = {}
    for key, value in state.items():
        if hasattr(value, "__tensor_flatten__") and hasattr(value, "qdata"):
            out.update({f"{key}.{n}": t for n, t in inner_tensors(value).items()})
        else:
            out[key] = value
    return out


def load_plain_state(var: nn.Module, state: dict[str, torch.Tensor], what: str) -> dict:
    """Copy the stored inner tensors of every quantised weight of `var` (already quantised the
    same way) from `state`; returns the rest of `state` (the ordinary tensors)."""
    rest = dict(state)
    for name, module in quantised_layers(var):
        key = f"{name}.weight"
        for part, tensor in inner_tensors(module.weight).items():
            stored = rest.pop(f"{key}.{part}", None)
            if stored is None or stored.shape != tensor.shape or stored.dtype != tensor.dtype:
                found = "missing" if stored is None else f"{stored.dtype} {tuple(stored.shape)}"
                raise ValueError(f"{what}: {key}.{part} should be {tensor.dtype} "
                                 f"{tuple(tensor.shape)}, found {found}; the directory does "
                                 "not match its config.json, re-save the model.")
            tensor.copy_(stored)
    return rest
