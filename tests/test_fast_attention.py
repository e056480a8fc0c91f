"""Fused attention in the ViT equals transformers' attention; attention weights still come out exactly.

Both paths compute softmax(q k^T / sqrt(d)) v in float32 from the same q, k, v; the fused kernel only
sums in another order (and subtracts the running max blockwise), which moves each attention output by
a few ulps. Comparisons use :func:`blipviz.testing.assert_close`: a tolerance of 16 float32 ulps per
layer the values went through, times their magnitude (which kernel runs differs between CPUs).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import blipviz
from blipviz.net import fast_attention
from blipviz.net.fast_attention import exact_attention, fast_attention_enabled
from blipviz.testing import assert_close, synthetic_images


@pytest.fixture
def sdpa_calls(monkeypatch):
    calls = []
    original = fast_attention.F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(tuple(args[0].shape))
        return original(*args, **kwargs)

    monkeypatch.setattr(fast_attention.F, "scaled_dot_product_attention", counting)
    return calls


def test_enabled_by_default_and_optional(tiny):
    assert fast_attention_enabled(tiny.hf)
    assert not fast_attention_enabled(blipviz.load_model("tiny-random", fast_attention=False).hf)


def test_fused_equals_exact_tiny(tiny, texts, sdpa_calls):
    images = synthetic_images(3)
    pixels = torch.stack([tiny.preprocessing(blipviz.net.images.load_image(im)) for im in images])
    with torch.inference_mode():
        fused_states = tiny.vision_states(pixels)
    fused_itm = np.asarray(tiny.itm_scores(images, texts))
    n_layers = tiny.config.vision_config.num_hidden_layers
    assert len(sdpa_calls) == 2 * n_layers  # the fused path did run, in every layer, both times
    with exact_attention(tiny):
        assert not fast_attention_enabled(tiny.hf)
        with torch.inference_mode():
            exact_states = tiny.vision_states(pixels)
        exact_itm = np.asarray(tiny.itm_scores(images, texts))
    assert fast_attention_enabled(tiny.hf)  # restored
    assert len(sdpa_calls) == 2 * n_layers
    n_text_layers = tiny.config.text_config.num_hidden_layers
    assert_close(fused_states, exact_states, depth=n_layers)
    assert_close(fused_itm, exact_itm, depth=n_layers + n_text_layers, magnitude=1.0)
    assert exact_itm.std() > 0.01


def test_attention_weights_requested_take_the_exact_path(tiny, sdpa_calls):
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = tiny.hf.vision_model(pixel_values=pixels, output_attentions=True)
        with exact_attention(tiny):
            ref = tiny.hf.vision_model(pixel_values=pixels, output_attentions=True)
        again = tiny.hf.vision_model(pixel_values=pixels)
    n_layers = tiny.config.vision_config.num_hidden_layers
    assert len(out.attentions) == n_layers
    assert out.attentions[0].shape == (2, 4, 65, 65)
    for a, b in zip(out.attentions, ref.attentions, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(out.last_hidden_state, ref.last_hidden_state)
    # transformers' capture hooks stay installed after the first request: later calls are fused again
    assert len(sdpa_calls) == n_layers
    assert_close(again.last_hidden_state, ref.last_hidden_state, depth=n_layers)


def test_training_with_dropout_takes_the_exact_path(sdpa_calls):
    model = blipviz.load_model("tiny-random")
    for module in model.hf.vision_model.modules():
        if hasattr(module, "qkv"):
            module.dropout.p = 0.1
    model.hf.vision_model.train()
    model.hf.vision_model(pixel_values=torch.zeros(1, 3, 64, 64))
    assert sdpa_calls == []


@pytest.mark.slow
def test_fused_equals_exact_full_vit_b(full_b, texts):
    """Twelve layers of 577 tokens: raw states, embeddings and ITM probabilities agree within 16 float32
    ulps per layer of their magnitude (the raw states' entries reach ~10; the measured gap is 1.3e-5
    on AVX-512 and AVX2 alike, against a bound of about 2e-4)."""
    image = synthetic_images(1, seed=3)
    fused = full_b.encode_images(image)
    fused_itm = np.asarray(full_b.itm_scores(fused, texts))
    with exact_attention(full_b):
        exact = full_b.encode_images(image)
    exact_itm = np.asarray(full_b.itm_scores(exact, texts))
    n_vision = full_b.config.vision_config.num_hidden_layers
    n_text = full_b.config.text_config.num_hidden_layers
    assert_close(fused.raw, exact.raw, depth=n_vision)
    assert_close(fused.embeddings, exact.embeddings, depth=n_vision + 1, magnitude=1.0)
    assert_close(fused_itm, exact_itm, depth=n_vision + n_text, magnitude=1.0)


def test_cross_attention_of_one_image_is_folded_and_equal_to_the_broadcast(tiny):
    """One image's texts go through the cross-attention as one query sequence: same numbers, same
    attention probabilities, no copies of the image's keys and values per text."""
    from blipviz.net.fast_attention import cross_attention_folded, cross_attention_modules, exact_attention

    modules = cross_attention_modules(tiny.hf)
    assert len(modules) == tiny.config.text_config.num_hidden_layers
    assert all(cross_attention_folded(m) for m in modules)
    feats = tiny.encode_images(synthetic_images(1, seed=7))
    tok = tiny.tokenize(["a dog on a beach", "two cats", "a much longer description of a red sofa"])
    ids, mask = tiny.itm_input_ids(tok), tok.attention_mask
    with torch.inference_mode():
        folded = tiny.itm_forward(ids, mask, feats.raw, output_attentions=True)
        with exact_attention(tiny):
            assert not any(cross_attention_folded(m) for m in modules)
            exact = tiny.itm_forward(ids, mask, feats.raw, output_attentions=True)
    assert all(cross_attention_folded(m) for m in modules)  # restored
    depth = tiny.config.text_config.num_hidden_layers
    assert_close(folded.last_hidden_state, exact.last_hidden_state, depth=depth)
    for a, b in zip(folded.cross_attentions, exact.cross_attentions, strict=True):
        assert a.shape == b.shape == (3, 4, ids.shape[1], tiny.n_image_tokens)
        assert_close(a, b, depth=depth, magnitude=1.0)
