"""VARiant: one VAR checkpoint as an elastic-depth supernet (full network early, subnet late)."""

from .config import PATCH_NUMS_256, PATCH_NUMS_512, VAEConfig, VARConfig
from .models.plan import DepthPlan, equidistant_layers
from .models.var import VAR, build_var
from .models.vqvae import VQVAE, build_vae
from .pretrained import load_model, save_pretrained
from .sampling.sampler import GenerationResult, generate

__all__ = [
    "PATCH_NUMS_256",
    "PATCH_NUMS_512",
    "VAEConfig",
    "VARConfig",
    "DepthPlan",
    "equidistant_layers",
    "VAR",
    "build_var",
    "VQVAE",
    "build_vae",
    "load_model",
    "save_pretrained",
    "GenerationResult",
    "generate",
]

__version__ = "0.1.0"
