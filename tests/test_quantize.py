"""Opt-in int8 dynamic quantisation: which layers change, and how far the scores move.

Tolerance. Dynamic int8 rounds each weight to 1/127 of its tensor's largest magnitude (about 1% of a
dot product's size for normally distributed weights) and each activation to 1/255 of its batch's
range (about 2% when LayerNorm'd activations have outliers of several standard deviations). On the
tiny net (2 + 2 layers of width 64) this moves the raw image states by about 6% (relative L2) and an
ITM logit by a few tenths: probabilities near 0.5 (slope 1/4) move by up to ~0.1, by ~0.04 on
average, and the order of pairs is kept (Spearman ~0.99). The bounds below leave a factor of about
two on these measured values; the full ViT-B/16 figures are in benchmarks/README.md.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import blipviz
from blipviz.errors import InputError
from blipviz.net.quantize import is_quantized, quantize_int8
from blipviz.testing import synthetic_images

TEXTS = [
    "a dog running on the beach",
    "two cats sleeping on a red sofa",
    "a bowl of fresh fruit",
    "an empty street at night",
    "a man riding a bicycle",
    "a red car parked",
    "snowy mountains",
]


@pytest.fixture(scope="module")
def quantized():
    return blipviz.load_model("tiny-random", quantize="int8")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a.ravel()))
    rb = np.argsort(np.argsort(b.ravel()))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_encoder_linears_are_int8_heads_stay_float(quantized):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    hf = quantized.hf
    assert is_quantized(hf) and quantized.quantization == "int8"
    vit_layer = hf.vision_model.encoder.layers[0]
    text_layer = hf.text_encoder.encoder.layer[0]
    for module in (
        vit_layer.self_attn.qkv,
        vit_layer.mlp.fc1,
        text_layer.attention.self.query,
        text_layer.crossattention.self.key,
        text_layer.output.dense,
    ):
        assert isinstance(module, DynamicLinear)
    for module in (hf.vision_proj, hf.text_proj, hf.itm_head):
        assert type(module) is torch.nn.Linear


def test_quantized_scores_agree_with_float32(tiny, quantized):
    images = synthetic_images(8, seed=3)
    exact = np.asarray(tiny.itm_scores(images, TEXTS))
    approx = np.asarray(quantized.itm_scores(images, TEXTS))
    diff = np.abs(exact - approx)
    assert diff.mean() < 0.08 and diff.max() < 0.5
    assert _spearman(exact, approx) > 0.95
    raw_exact = tiny.encode_images(images[:2]).raw
    raw_approx = quantized.encode_images(images[:2]).raw
    assert ((raw_exact - raw_approx).norm() / raw_exact.norm()) < 0.12
    cos = np.abs(
        np.asarray(tiny.cosine_scores(images, TEXTS)) - np.asarray(quantized.cosine_scores(images, TEXTS))
    )
    assert cos.max() < 0.05


def test_quantize_is_checked(tiny):
    with pytest.raises(InputError, match="quantize"):
        blipviz.load_model("tiny-random", quantize="int4")
    fake = blipviz.BlipITM(tiny.hf, name="x", preprocessing=tiny.preprocessing)
    fake.device = torch.device("cuda")  # the check comes before anything moves
    with pytest.raises(InputError, match="CPU only"):
        quantize_int8(fake)
    fake.device, fake.dtype = torch.device("cpu"), torch.bfloat16
    with pytest.raises(InputError, match="float32"):
        quantize_int8(fake)
    assert not is_quantized(tiny.hf)


def test_int8_net_information_counts_the_packed_weights(tiny, quantized):
    assert tiny.image_encoder.parameter_count == 100_288
    for part in ("image_encoder", "text_encoder", "multimodal_encoder"):
        assert getattr(quantized, part).parameter_count == getattr(tiny, part).parameter_count
        assert getattr(quantized, part).parameter_names() == getattr(tiny, part).parameter_names()
    exact, int8 = blipviz.net_information(tiny), blipviz.net_information(quantized)
    assert int8.arrays_total_element_count == exact.arrays_total_element_count
    assert list(int8.arrays_element_counts.index) == list(exact.arrays_element_counts.index)
    arrays = int8.arrays_element_counts
    qkv = "vision_model.encoder.layers.0.self_attn.qkv"
    assert arrays.loc[f"{qkv}.weight", "quantized"] and arrays.loc[f"{qkv}.weight", "dtype"] == "qint8"
    assert not arrays.loc[f"{qkv}.bias", "quantized"] and not arrays.loc["itm_head.weight", "quantized"]
    # the encoder Linear weights of both towers: 2 ViT layers x (qkv + proj + fc1 + fc2), 2 text
    # layers x (6 self-attention and feed-forward + 4 cross-attention), width 64, MLP 128
    vit = 2 * (64 * 192 + 64 * 64 + 2 * 64 * 128)
    text = 2 * (4 * 64 * 64 + 2 * 64 * 128 + 4 * 64 * 64)
    assert (
        int8.arrays_quantized_element_count
        == vit + text
        == int(arrays.loc[arrays.quantized, "elements"].sum())
    )
    assert exact.arrays_quantized_element_count == 0
    assert int8.layer_type_counts["Linear (int8)"] == 2 * 4 + 2 * 10
    assert int8.layer_type_counts["Linear"] == 3  # vision_proj, text_proj, itm_head stay float
    assert int(int8.layer_type_counts.sum()) == int(exact.layer_type_counts.sum())
    image = int8.part("ImageEncoder")
    assert image.arrays_total_element_count == 100_288 and image.layer_type_counts["Linear (int8)"] == 8
    assert int8.parts.loc["ImageEncoder", "quantized_elements"] == vit
    assert "int8 elements" in repr(int8)
