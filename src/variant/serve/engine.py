"""The model side of the server: one request's images through the public sampler.

Each request of a batch runs as its own sampler call, exactly the call `variant sample` makes
for its printed command (`--labels ... --seed S --rng per-image --batch-size n --threads T`), so
the response's PNG bytes are the command's. Running the rows of several requests in one call
would be faster, but on CPU the GEMM and convolution kernels chosen depend on the number of
rows, which changes an image's float values (~1e-5) and with them some PNG bytes (measured in
docs/SERVING.md): an image would depend on what it was batched with.
"""

from __future__ import annotations

import base64
import dataclasses
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..efficiency.budget import Predictor, Workload, check_fits, model_bytes, runtime_bytes
from ..images import image_name, png_bytes, to_uint8
from ..precision import weight_precision
from ..pretrained import RANDOM_PREFIX
from ..sampling.configuration import Configuration
from ..sampling.sampler import generate
from ..sampling.weight_lever import WEIGHTS
from ..units import fmt_bytes
from .schema import ImageRequest, RequestError


@dataclass
class Served:
    """What one request's run produced."""

    pngs: list[bytes]
    kv_peak_bytes: int
    seconds: float  # the sampler call, PNG encoding included
    timings: dict  # transformer, decoder seconds (the sampler's own timers)


class Engine:
    """A loaded model: resolves configurations, checks memory, runs requests."""

    def __init__(self, var, vae, *, source: str = "builtin", vae_source: str | None = None,
                 revision: str | None = None, max_memory: int | None = None):
        self.var, self.vae = var, vae
        self.source, self.vae_source, self.revision = source, vae_source, revision
        self.max_memory = max_memory
        self.weights = weight_precision(var)  # quantised weights: 'int8', 'fp8' or None
        self.weight_bytes = model_bytes(var.config, vae.config, self.weights)
        self.runtime_bytes: int | None = None  # the process beyond the weights, fixed once
        self._configs: dict[tuple, Configuration] = {}

    @property
    def device(self) -> torch.device:
        return self.var.device

    def configuration(self, spec: str, settings) -> Configuration:
        """`spec` resolved for this model and the request's settings; RequestError(400).
        Resolved once per spec and seedless settings; the request's seed is set on a copy."""
        key = (spec, settings.replace(seed=None))
        if key not in self._configs:
            try:
                config = Configuration.resolve(spec, self.var.depth, self.var.patch_nums,
                                               key[1])
            except ValueError as err:
                raise RequestError(400, f"configuration: {err}") from None
            if len(self._configs) > 1024:  # specs come from clients: keep the cache bounded
                self._configs.clear()
            self._configs[key] = config
        config = self._configs[key]
        return dataclasses.replace(config, settings=config.settings.replace(seed=settings.seed))

    def settle_runtime(self) -> None:
        """Fix the process's memory beyond the weights, measured now (after the warm-up and
        between requests), so that memory refusals do not depend on what is running."""
        self.runtime_bytes = runtime_bytes(self.device, self.weight_bytes)

    def check_memory(self, config: Configuration, images: int) -> None:
        """Refuse up front (422) a request predicted to exceed --max-memory."""
        if self.max_memory is None:
            return
        if self.runtime_bytes is None:
            self.settle_runtime()
        workload = Workload(batch=images, sampling=config.settings, device=self.device.type)
        predictor = Predictor(self.var.config, self.vae.config, workload,
                              runtime_bytes=self.runtime_bytes)
        try:
            check_fits(predictor, [config.plan], self.max_memory,
                       f"the server's --max-memory of {fmt_bytes(self.max_memory)}; ask for "
                       "fewer images or a cheaper configuration.", self.weights)
        except ValueError as err:
            raise RequestError(422, str(err)) from None

    def run(self, request: ImageRequest, config: Configuration) -> Served:
        start = time.perf_counter()
        n = request.num_images
        res = generate(self.var, n, torch.tensor(request.labels), configuration=config,
                       image_keys=[(request.seed, j) for j in range(n)]
                       if config.settings.rng == "per-image" else None)
        pngs = [png_bytes(a) for a in to_uint8(res.images)]
        return Served(pngs, int(res.kv_peak_bytes), time.perf_counter() - start, res.timings)

    def command(self, request: ImageRequest, config: Configuration) -> str:
        """The `variant sample` line that writes this request's images, byte for byte, into
        images/ (same machine and library versions: CPU kernels differ between processors)."""
        args = ["variant", "sample", "--model", public_source(self.source)]
        if self.vae_source:
            args += ["--vae", public_source(self.vae_source)]
        if self.revision:
            args += ["--revision", self.revision]
        if self.weights:  # a model loaded quantised loads so again
            args += [WEIGHTS.flag, self.weights]
        args += ["--plan", config.name, "--labels", *map(str, request.labels),
                 *config.settings.cli_args(), "--batch-size", str(request.num_images),
                 "--device", str(self.device)]
        if self.device.type == "cpu":
            args += ["--threads", str(torch.get_num_threads())]
        args += ["--out", "grid.png", "--save-each", "images"]
        return shlex.join(args)

    def response_images(self, request: ImageRequest, served: Served,
                        class_names: tuple[str, ...]) -> list[dict]:
        return [{"name": image_name(j, label), "label": label, "class_name": class_names[label],
                 "png_base64": base64.b64encode(png).decode("ascii")}
                for j, (label, png) in enumerate(zip(request.labels, served.pngs))]


def public_source(source: str) -> str:
    """A model source as a response may show it: a local path only by its last name (responses
    carry no server paths); 'builtin', random:PRESET and Hub ids as they are."""
    if source.startswith(RANDOM_PREFIX):
        return source
    path = Path(source).expanduser()
    return path.name if path.exists() and source != "builtin" else source
