import numpy as np
import pytest
import torch

from mosaicrec.data.content import ItemContent
from mosaicrec.errors import ConfigError
from mosaicrec.fusion import FusionConfig, concat_features, select_modalities
from mosaicrec.fusion.learned import ModalityFusion, alignment_loss, info_nce, pretrain_alignment


def _content(n=6, seed=0):
    rng = np.random.default_rng(seed)
    text, image = rng.standard_normal((n, 5)).astype(np.float32), rng.standard_normal((n, 3)).astype(np.float32)
    has_image = np.array([True, False] * (n // 2))
    image[~has_image] = 0
    return ItemContent(np.array([str(i) for i in range(n)], dtype=object), {"text": text, "image": image},
                       {"text": np.ones(n, bool), "image": has_image})


def test_concat_dot_product_is_weighted_sum_of_cosines():
    c = _content()
    x = concat_features(c, ["text", "image"], {"text": 2.0, "image": 0.5})
    t = c.features["text"] / np.linalg.norm(c.features["text"], axis=1, keepdims=True)
    im = c.features["image"] / np.maximum(np.linalg.norm(c.features["image"], axis=1, keepdims=True), 1e-12)
    np.testing.assert_allclose(x[0] @ x[2], 2.0 * t[0] @ t[2] + 0.5 * im[0] @ im[2], rtol=1e-5)
    assert not x[1, 5:].any()  # item 1 has no image: a zero block


def test_select_modalities_names_what_is_missing():
    with pytest.raises(ConfigError, match="no 'audio' content.*text, image"):
        select_modalities(_content(), ["text", "audio"], "hybrid")


@pytest.mark.parametrize("kind", ["gated", "attention"])
def test_missing_modality_is_masked_not_zero_filled(kind):
    torch.manual_seed(0)
    c = _content()
    fusion = ModalityFusion({"text": 5, "image": 3}, 4, FusionConfig(kind=kind))
    feats = {m: torch.from_numpy(v) for m, v in c.features.items()}
    masks = {m: torch.from_numpy(v) for m, v in c.masks.items()}
    out = fusion(feats, masks)
    garbage = dict(feats, image=feats["image"] + 100.0)  # what sits in a missing row must not matter
    out2 = fusion(garbage, masks)
    missing = ~masks["image"]
    torch.testing.assert_close(out[missing], out2[missing])
    assert not torch.allclose(out[~missing], out2[~missing])
    # an item without its image is described by its text alone: the full weight goes to text
    w = fusion.modality_weights(feats, masks)
    torch.testing.assert_close(w.sum(1), torch.ones(len(w)))
    assert (w[missing, 1] == 0).all() and torch.allclose(w[missing, 0], torch.ones(int(missing.sum())))
    text_only = fusion({"text": feats["text"], "image": feats["image"]},
                       {"text": masks["text"], "image": torch.zeros_like(masks["image"])})
    torch.testing.assert_close(text_only[missing], out[missing])


def test_info_nce_is_low_for_matching_pairs_and_high_for_shuffled():
    torch.manual_seed(0)
    a = torch.randn(32, 8)
    matched, shuffled = info_nce(a, a + 0.01 * torch.randn(32, 8)), info_nce(a, a[torch.randperm(32)])
    assert matched < 0.25 * shuffled and shuffled > np.log(32)


def test_pretraining_aligns_two_views_of_the_same_items():
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((256, 6))
    feats = {"text": (latent @ rng.standard_normal((6, 10))).astype(np.float32),
             "image": (latent @ rng.standard_normal((6, 7))).astype(np.float32)}
    masks = {m: np.ones(256, bool) for m in feats}
    torch.manual_seed(0)
    fusion = ModalityFusion({"text": 10, "image": 7}, 8, FusionConfig(kind="gated"))
    losses = pretrain_alignment(fusion, feats, masks, epochs=30, batch_size=64, lr=0.01)
    assert losses[-1] < 0.5 * losses[0]
    # content ↔ collaborative term: present and finite when collaborative vectors are given
    tf = {m: torch.from_numpy(v) for m, v in feats.items()}
    tm = {m: torch.from_numpy(v) for m, v in masks.items()}
    assert torch.isfinite(alignment_loss(fusion, tf, tm, collaborative=torch.randn(256, 8)))
