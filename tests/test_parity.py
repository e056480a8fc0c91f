"""blipviz against transformers' BlipForImageTextRetrieval and against BLIP's [ENC] ITM recipe.

Both sides run float32 kernels on the same weights; the only differences are padding (masked
positions contribute exactly 0 after softmax), batch positions and the order of reductions in batched
matmuls, which move results by a few float32 ulps per layer. Probabilities and cosines are compared
with :func:`blipviz.testing.assert_close`: 16 ulps per layer of the ViT and the text tower together.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import blipviz
from blipviz.net.text import blip_tokenizer, normalize_caption
from blipviz.testing import assert_close, net_depth, synthetic_images

# The third text is long on purpose: BLIP cuts it at 35 tokens and so does blipviz, which says so.
pytestmark = pytest.mark.filterwarnings("ignore::blipviz.TruncationWarning")

TEXTS = [
    "A dog (brown) running on the BEACH!",
    "two cats sleeping on a red sofa",
    "an empty street at night; " + "very " * 40 + "long",
]


def _pixels(model, images):
    return torch.stack([model.preprocessing(blipviz.net.images.load_image(im)) for im in images])


def _hf_itm(model, input_ids, attention_mask, pixel_values_one_image):
    """HF's forward for every text against one image (pixels repeated per text, as the model card does)."""
    n = input_ids.shape[0]
    with torch.no_grad():
        out = model.hf(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values_one_image.expand(n, -1, -1, -1),
            use_itm_head=True,
        )
    return out.itm_score.softmax(-1)[:, 1].numpy()


def _model_card(model_fixture):
    """The same weights used as the Hugging Face model card uses them."""
    return blipviz.BlipITM(
        model_fixture.hf,
        name=model_fixture.name,
        preprocessing=model_fixture.preprocessing,
        first_token="cls",
        normalize_text=False,
        max_text_tokens=None,
    )


def _check_model_card_parity(model, images):
    card = _model_card(model)
    tok = blip_tokenizer()(TEXTS, padding="longest", return_tensors="pt")
    pixels = _pixels(model, images)
    itm = np.asarray(card.itm_scores(images, TEXTS))
    for i in range(len(images)):
        ref = _hf_itm(model, tok.input_ids, tok.attention_mask, pixels[i : i + 1])
        assert_close(itm[i], ref, depth=net_depth(model), magnitude=1.0)
    with torch.no_grad():
        ref_cos = model.hf(
            input_ids=tok.input_ids,
            attention_mask=tok.attention_mask,
            pixel_values=pixels,
            use_itm_head=False,
        ).itm_score.numpy()
    assert_close(card.cosine_scores(images, TEXTS), ref_cos, depth=net_depth(model), magnitude=1.0)
    return itm


def _check_blip_enc_parity(model, images):
    """BLIP's recipe from the spec: pre_caption, WordPiece padded to max_length 35 with truncation,
    input_ids[:, 0] = [ENC], cross-attention to every image token, softmax(itm_head(h[:, 0]))[:, 1]."""
    captions = [normalize_caption(t) for t in TEXTS]
    tok = blip_tokenizer()(
        captions, padding="max_length", truncation=True, max_length=35, return_tensors="pt"
    )
    ids = tok.input_ids.clone()
    ids[:, 0] = 30523
    pixels = _pixels(model, images)
    itm = np.asarray(model.itm_scores(images, TEXTS))
    for i in range(len(images)):
        ref = _hf_itm(model, ids, tok.attention_mask, pixels[i : i + 1])
        assert_close(itm[i], ref, depth=net_depth(model), magnitude=1.0)
    return itm


def test_model_card_parity_tiny(tiny):
    itm = _check_model_card_parity(tiny, synthetic_images(3))
    assert itm.std() > 0.01  # the comparison is not between constants


def test_blip_enc_parity_tiny(tiny):
    enc = _check_blip_enc_parity(tiny, synthetic_images(3))
    card = np.asarray(_model_card(tiny).itm_scores(synthetic_images(3), TEXTS))
    assert np.abs(enc - card).max() > 1e-3  # [ENC] and normalisation change the numbers


@pytest.mark.slow
def test_model_card_and_enc_parity_full_vit_b(full_b):
    images = synthetic_images(2, seed=5)
    itm = _check_model_card_parity(full_b, images)
    assert itm.std() > 1e-3
    _check_blip_enc_parity(full_b, images)


@pytest.mark.parametrize("fixture", ["tiny", pytest.param("full_b", marks=pytest.mark.slow)])
def test_broadcast_cross_attention_equals_expanded(fixture, request):
    """One image's states with batch 1, broadcast over the texts, equal the states repeated per text."""
    model = request.getfixturevalue(fixture)
    feats = model.encode_images(synthetic_images(1, seed=2))
    tok = model.tokenize(TEXTS)
    with torch.inference_mode():
        broadcast = model.itm_logits(tok, feats.raw)
        expanded = model.itm_logits(tok, feats.raw.expand(len(TEXTS), -1, -1).contiguous())
    # logits of order a few: their own magnitude
    assert_close(broadcast, expanded, depth=net_depth(model, "text"))


def test_cross_attention_keys_are_computed_once_per_layer_per_image(tiny):
    """The key/value projections of every cross-attention layer see a batch of 1 however many texts."""
    seen = []
    hooks = [
        layer.crossattention.self.key.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
        for layer in tiny.hf.text_encoder.encoder.layer
    ]
    try:
        tiny.itm_scores(synthetic_images(2), TEXTS)
    finally:
        for h in hooks:
            h.remove()
    n_layers = tiny.config.text_config.num_hidden_layers
    assert len(seen) == 2 * n_layers
    assert all(shape[0] == 1 for shape in seen)
