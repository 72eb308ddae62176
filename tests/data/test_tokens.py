"""Pre-tokenised datasets: equality with on-the-fly tokenisation, resumability, sharding, errors."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from variant.config import VAEConfig
from variant.data.loader import build_loader, set_loader_epoch
from variant.data.procedural import ProceduralImages
from variant.data.tokens import (
    FlippedImages,
    TokenDataset,
    flip_choice,
    images_for_tokenizing,
    load_token_dataset,
    read_index,
    shard_name,
    tokenize_dataset,
)
from variant.models.vqvae import VQVAE

TINY = VAEConfig(V=32, Cvae=8, ch=32, ch_mult=(1, 2), num_res_blocks=1, patch_nums=(1, 2, 4))
NUM_IMAGES, SHARD = 20, 8


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_vae(seed: int = 0) -> VQVAE:
    torch.manual_seed(seed)
    return VQVAE(TINY).freeze()


@pytest.fixture(scope="module")
def vae() -> VQVAE:
    return tiny_vae()


@pytest.fixture(scope="module")
def images() -> ProceduralImages:
    return ProceduralImages(NUM_IMAGES, image_size=8, seed=0)


@pytest.fixture(scope="module")
def token_dir(tmp_path_factory, vae, images):
    out = tmp_path_factory.mktemp("tokens")
    index = tokenize_dataset(vae, images, out, shard_size=SHARD, batch_size=5)
    assert index is not None
    return out


def test_index_describes_the_tokens(token_dir, vae):
    index = read_index(token_dir)
    assert index["num_samples"] == NUM_IMAGES and index["num_shards"] == 3
    assert index["shard_samples"] == [8, 8, 4] and index["num_skipped"] == 0
    assert index["L"] == 21 and index["patch_nums"] == [1, 2, 4] and index["V"] == 32
    assert index["source"]["type"] == "ProceduralImages" and index["source"]["num_classes"] == 10
    ds = TokenDataset(token_dir, tokenizer=vae)
    assert ds.sample_format == "tokens" and ds.num_classes == 10 and len(ds) == NUM_IMAGES


def test_batches_equal_on_the_fly_tokenisation(token_dir, vae, images):
    seed = 7
    tokens = TokenDataset(token_dir, seed, tokenizer=vae)
    flipped = FlippedImages(images, seed)
    tok_loader = build_loader(tokens, 4, seed=seed)
    img_loader = build_loader(flipped, 4, seed=seed)
    flips = set()
    for epoch in range(2):
        set_loader_epoch(tok_loader, epoch)
        set_loader_epoch(img_loader, epoch)
        flips |= {flip_choice(seed, epoch, i) for i in range(NUM_IMAGES)}
        for (idx_BL, label_tok), (img_B3HW, label_img) in zip(tok_loader, img_loader):
            with torch.no_grad():
                want_BL = torch.cat(vae.img_to_idxBl(img_B3HW), dim=1)
            assert idx_BL.dtype == torch.long and idx_BL.shape == (4, 21)
            assert torch.equal(idx_BL, want_BL)
            assert torch.equal(label_tok, label_img)
    assert flips == {0, 1}


def test_flip_choice_is_deterministic_and_fair():
    draws = [flip_choice(3, 1, i) for i in range(2000)]
    assert draws == [flip_choice(3, 1, i) for i in range(2000)]
    assert 900 < sum(draws) < 1100
    assert draws != [flip_choice(3, 2, i) for i in range(2000)]


def test_no_hflip_always_gives_the_unflipped_tokens(token_dir, vae, images):
    ds = load_token_dataset(token_dir, seed=1, hflip=False)
    img_B3HW = torch.stack([images[i][0] for i in range(NUM_IMAGES)])
    with torch.no_grad():
        want = torch.cat(vae.img_to_idxBl(img_B3HW), dim=1)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        assert torch.equal(torch.stack([ds[i][0] for i in range(NUM_IMAGES)]), want)


def test_rerun_rebuilds_only_missing_shards_identically(tmp_path, vae, images, token_dir):
    out = tmp_path / "tok"
    tokenize_dataset(vae, images, out, shard_size=SHARD, batch_size=5)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert before[shard_name(0)] == (token_dir / shard_name(0)).read_bytes()
    for name in (shard_name(0), shard_name(2)):
        os.utime(out / name, (1, 1))  # old mtimes: a rewrite would change them
    (out / shard_name(1)).unlink()
    (out / "index.json").unlink()
    tokenize_dataset(vae, images, out, shard_size=SHARD, batch_size=5)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert os.stat(out / shard_name(0)).st_mtime == 1 and os.stat(out / shard_name(2)).st_mtime == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_ranks_write_interleaved_shards(tmp_path, vae, images, token_dir):
    out = tmp_path / "ranks"
    assert tokenize_dataset(vae, images, out, shard_size=SHARD, rank=1, world_size=2) is None
    assert sorted(p.name for p in out.iterdir()) == [shard_name(1)]
    with pytest.raises(ValueError, match="incomplete"):
        TokenDataset(out)
    index = tokenize_dataset(vae, images, out, shard_size=SHARD, rank=0, world_size=2)
    assert index is not None
    for name in (shard_name(0), shard_name(1), shard_name(2)):
        assert (out / name).read_bytes() == (token_dir / name).read_bytes()
    assert json.loads((out / "index.json").read_text()) == read_index(token_dir)


def test_mismatched_tokenizer_is_a_clear_error(token_dir, vae, images):
    other = tiny_vae(seed=1)
    with pytest.raises(ValueError, match="re-tokenise"):
        TokenDataset(token_dir, tokenizer=other)
    with pytest.raises(ValueError, match="patch_nums"):
        TokenDataset(token_dir, patch_nums=(1, 2, 3, 4))
    ds = TokenDataset(token_dir)
    ds.check_compatible(vae)
    with pytest.raises(ValueError, match="tokenizer"):
        ds.check_compatible(other)
    with pytest.raises(ValueError, match="another tokenize run"):
        tokenize_dataset(other, images, token_dir, shard_size=SHARD)


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="variant tokenize"):
        TokenDataset(tmp_path)


def test_folder_skips_undecodable_files(tmp_path, vae):
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    (root / "b" / "1.png").write_bytes(b"not a png")
    dataset = images_for_tokenizing(str(root), 8)
    index = tokenize_dataset(vae, dataset, tmp_path / "tok", shard_size=4)
    assert index["num_samples"] == 5 and index["num_skipped"] == 1
    ds = TokenDataset(tmp_path / "tok")
    assert ds.labels.tolist() == [0, 0, 0, 1, 1] and ds.num_classes == 2
    good = [dataset[i][0] for i in (0, 1, 2, 3, 5)]  # eval transform: resize + centre crop
    with torch.no_grad():
        want = torch.cat(vae.img_to_idxBl(torch.stack(good)), dim=1)
    unflipped = load_token_dataset(tmp_path / "tok", hflip=False)
    assert torch.equal(torch.stack([unflipped[i][0] for i in range(5)]), want)
