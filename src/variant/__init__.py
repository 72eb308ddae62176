"""VARiant: one VAR checkpoint as an elastic-depth supernet (full network early, subnet late).

Shape legend, one for the whole package (tensor names carry these letters as a suffix, e.g.
`x_BLD`, `logits_BlV`; a file's own legend lists the letters it uses, with these meanings):

    B  batch: images, or the rows of a transformer pass
    R  rows of a guided transformer pass (2B: conditional rows first), where B appears too
    K  scales (the paper's K token maps)          l  tokens of one scale (pn * pn)
    L  all tokens of a sequence, or all a layer holds in its cache
    D  width of the transformer                   V  vocab (codebook size)
    A  attention heads                             E  head dim
    C  channels of a feature map (the tokenizer latent has Cvae of them)
    H W  image height, width    h w  height, width of a downsampled grid (latent, patch grid)
    pn side of one scale ("pp" in a suffix: a pn x pn map)     3  RGB
    N  a flat count of items (samples, or positions), said where used
    M  reference samples        F  feature dim      Y  classes

Depth is never a letter: the paper's D (layers) is written `depth` / `total_depth`, and d
(subnet depth) `subnet_depth`. Official names keep their own letters (`scale_mul_1H11`,
`ema_vocab_hit_SV`, `img_to_idxBl`).
"""

from .config import PATCH_NUMS_256, PATCH_NUMS_512, VAEConfig, VARConfig
from .models.var import VAR, build_var
from .models.vqvae import VQVAE, build_vae
from .pretrained import load_model, save_pretrained
from .sampling.plan import DepthPlan, equidistant_layers
from .sampling.protocol import ScaleModel
from .sampling.sampler import GenerationResult, generate
from .sampling.settings import SamplingConfig

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
    "SamplingConfig",
    "ScaleModel",
]

__version__ = "0.1.0"
