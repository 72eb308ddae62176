"""`torch.compile` for the sampler's per-scale step and the training blocks, with one fallback.

Compiling is the caller's choice (`SamplingConfig(compile=True)`, `TrainConfig(compile=True)`,
`--compile`), never done at import. Shapes are static per scale (`dynamic=False`): a sampling
call compiles one graph per (scale, layer set, rows), which later calls with the same plan and
batch reuse; the lean cache's bookkeeping (allocation, release, the meter) is traced into the
graph with its in-place writes into the preallocated buffers. CUDA graphs are not used: every
step writes into cache buffers that live across steps (mutated inputs), which inductor's
CUDA-graph mode refuses.

Where compilation is unavailable or fails (no C++ compiler for inductor on CPU, an unsupported
Python, a dynamo/inductor error), one log line says why and the eager path runs from then on.
"""

from __future__ import annotations

import contextlib
import functools
import logging

import torch

log = logging.getLogger(__name__)

# Graphs one compiled function may hold: one per scale and layer set of each plan and batch
# size that runs; dynamo's default (8) would fall back to eager after the eighth scale.
RECOMPILE_LIMIT = 512


def compile_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "compilation failed" (dynamo's and inductor's), not a bug in
    the compiled code: the caller then reruns the same step eagerly."""
    from torch._dynamo import exc

    errors: list[type[BaseException]] = [exc.TorchDynamoException]
    try:
        from torch._inductor import exc as inductor_exc
    except ImportError:  # a torch without inductor: dynamo's errors cover what can fail
        return tuple(errors)
    for name in ("InductorError", "CppCompileError", "InvalidCxxCompiler"):
        error = getattr(inductor_exc, name, None)
        if isinstance(error, type):
            errors.append(error)
    return tuple(errors)


def recompile_room():
    """Raise dynamo's per-function recompile limit for the calls inside (its name changed
    across torch versions: `recompile_limit`, formerly `cache_size_limit`). Inside code being
    compiled (a compiled step calling compiled FlexAttention) it does nothing: the outer call
    has raised the limit already."""
    if torch.compiler.is_compiling():
        return contextlib.nullcontext()
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name):
            return config.patch(**{name: max(RECOMPILE_LIMIT, getattr(config, name))})
    return contextlib.nullcontext()


def say_eager(what: str, error: BaseException) -> None:
    """The one log line of a failed compilation (the underlying error where dynamo wrapped it:
    inductor's missing C++ compiler, an exception raised while tracing)."""
    error = getattr(error, "inner_exception", None) or error.__cause__ or error
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    log.warning("torch.compile of %s failed (%s: %s); running it eagerly", what,
                type(error).__name__, first[:300])


class CompiledStep:
    """One model class's `run_layers` (one scale's step) under `torch.compile`.

    Traced whole (`fullgraph=True`), so a failure is raised before any of the step has run and
    the same step reruns eagerly; after one failure it stays eager (one log line). Compiled
    graphs live with the function's code and are reused by every model object of the class.
    """

    def __init__(self, model_class: type, backend: str = "inductor"):
        self.eager_step = model_class.run_layers
        self.step = torch.compile(self.eager_step, fullgraph=True, dynamic=False, backend=backend)
        self.eager = False

    def __call__(self, model, scale_index, x_RlD, ctx, layers, cache):
        if not self.eager:
            try:
                with recompile_room():
                    return self.step(model, scale_index, x_RlD, ctx, tuple(layers), cache)
            except compile_errors() as error:
                say_eager("the per-scale sampling step", error)
                self.eager = True
        return self.eager_step(model, scale_index, x_RlD, ctx, layers, cache)


@functools.cache
def compiled_step(model_class: type) -> CompiledStep:
    return CompiledStep(model_class)


class CompiledSteps:
    """A `ScaleModel` whose `run_layers` is its class's `CompiledStep`; everything else is the
    wrapped model's (the sampler drives it like the model itself)."""

    def __init__(self, model, step: CompiledStep | None = None):
        self.__dict__["model"] = model
        self.__dict__["step"] = step or compiled_step(type(model))

    def __getattr__(self, name):
        return getattr(self.model, name)

    def run_layers(self, scale_index, x_RlD, ctx, layers, cache):
        return self.step(self.model, scale_index, x_RlD, ctx, layers, cache)


def compile_blocks(var, backend: str = "inductor") -> None:
    """Compile each transformer block in place (`nn.Module.compile`: state-dict keys unchanged),
    before any parallel wrapping, as torchtitan does; one graph per token count a plan gives."""
    for block in var.blocks:
        block.compile(fullgraph=True, dynamic=False, backend=backend)


def uncompile_blocks(var) -> None:
    """Undo `compile_blocks` (nn.Module.compile keeps its compiled call in
    `_compiled_call_impl`; torch has no public way to drop it)."""
    for block in var.blocks:
        block._compiled_call_impl = None


def blocks_compiled(var) -> bool:
    return any(getattr(block, "_compiled_call_impl", None) is not None for block in var.blocks)
