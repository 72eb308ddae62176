"""Dead-code restarts re-seed unused codes with the quantiser's residual vectors."""

import torch

from variant.config import VAEConfig
from variant.models.vqvae import VQVAE
from variant.tokenizer.codebook import residual_vectors, restart_dead_codes

TINY = VAEConfig(V=32, Cvae=8, ch=32, ch_mult=(1, 2), num_res_blocks=1, patch_nums=(1, 2, 4))


def test_residuals_are_the_lookup_inputs_and_dead_codes_restart():
    torch.manual_seed(0)
    vae = VQVAE(TINY).train()
    img = torch.rand(3, 3, 8, 8) * 2 - 1
    f_BChw = vae.img_to_f(img)
    z_NC = residual_vectors(vae.quantize, f_BChw)
    assert z_NC.shape == (3 * (1 + 4 + 16), 8)
    first_scale = f_BChw.detach().mean(dim=(2, 3))  # scale 1 looks at the area average of f
    torch.testing.assert_close(z_NC[:3], first_scale)

    vae(img)  # fills the usage EMA
    used = vae.quantize.ema_vocab_hit_SV.sum(0) > 0
    before = vae.quantize.embedding.weight.detach().clone()
    count = restart_dead_codes(vae.quantize, f_BChw, threshold=0.5,
                               generator=torch.Generator().manual_seed(0))
    after = vae.quantize.embedding.weight.detach()
    changed = (after != before).any(dim=1)
    assert count == int(changed.sum()) > 0 and not changed[used].any()
    rows = {tuple(r.tolist()) for r in z_NC}
    assert all(tuple(r.tolist()) in rows for r in after[changed])
    assert restart_dead_codes(vae.quantize, f_BChw, threshold=0.5,
                              generator=torch.Generator().manual_seed(0)) == 0
