"""Acceptance tests on trained weights: ``make test-trained`` (needs the Hugging Face Hub, or the
checkpoint and BLIP's demo image already in the local caches).

1. transformers' own integration values for ``Salesforce/blip-itm-base-coco`` on BLIP's demo image
   with "A woman and her dog sitting in a beach": ITM softmax [[0.0029, 0.9971]] and cosine 0.5162
   (transformers' ``tests/models/blip/test_modeling_blip.py``), reached through blipviz with the
   model card's token conventions (``first_token="cls", normalize_text=False``), rtol 1e-3 as
   transformers' test uses;
2. blipviz's faithful scores (BLIP's ``[ENC]`` first token, BLIP's caption normalisation) for the
   same pair, equal to the net run by hand with BLIP's conventions on the same weights.

Each test skips, saying why, when the Hub cannot be reached and the caches lack what it needs;
``make test`` runs offline, so there they always skip.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch

import blipviz

CHECKPOINT = "Salesforce/blip-itm-base-coco"
DEMO_URL = "https://storage.googleapis.com/sfr-vision-language-research/BLIP/demo.jpg"
CAPTION = "A woman and her dog sitting in a beach"

pytestmark = pytest.mark.enable_socket  # the Hub and the demo image: the only tests that may go online


@pytest.fixture(scope="module")
def demo_image():
    from PIL import Image

    cached = os.path.join(os.path.expanduser("~"), ".cache", "blipviz", "blip-demo.jpg")
    if not os.path.exists(cached):
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            pytest.skip(f"offline (HF_HUB_OFFLINE=1) and BLIP's demo image is not cached at {cached}")
        import urllib.request

        try:
            with urllib.request.urlopen(DEMO_URL, timeout=30) as response:
                data = response.read()
        except OSError as error:
            pytest.skip(f"BLIP's demo image could not be fetched from {DEMO_URL}: {error}")
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        with open(cached, "wb") as f:
            f.write(data)
    with open(cached, "rb") as f:
        return Image.open(io.BytesIO(f.read())).convert("RGB")


def _load(**options):
    try:
        return blipviz.load_model(CHECKPOINT, **options)
    except (blipviz.OfflineError, blipviz.ModelLoadError) as error:
        pytest.skip(f"{CHECKPOINT} is not available here: {error}")


def test_transformers_integration_values_through_blipviz(demo_image):
    model = _load(first_token="cls", normalize_text=False)
    itm = model.itm_scores([demo_image], [CAPTION])
    cosine = model.cosine_scores([demo_image], [CAPTION])
    probabilities = np.array([[1.0 - itm.values[0, 0], itm.values[0, 0]]])
    np.testing.assert_allclose(probabilities, [[0.0029, 0.9971]], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(cosine.values[0, 0], 0.5162, rtol=1e-3)


def test_faithful_scores_are_blip_s_recipe_on_trained_weights(demo_image):
    model = _load()
    itm = model.itm_scores([demo_image], [CAPTION]).values[0, 0]
    # BLIP's recipe by hand: normalised caption, [ENC] in place of [CLS], 35 tokens, the ITM head
    from blipviz.net.text import blip_tokenizer, normalize_caption

    tokenizer = blip_tokenizer()
    enc = tokenizer(normalize_caption(CAPTION), return_tensors="pt", truncation=True, max_length=35)
    ids = enc.input_ids.clone()
    ids[:, 0] = tokenizer.convert_tokens_to_ids("[ENC]")
    pixels = model.preprocessing(model.preprocessing.load(demo_image, 0)).unsqueeze(0)
    with torch.no_grad():
        out = model.hf(
            input_ids=ids, pixel_values=pixels, attention_mask=enc.attention_mask, use_itm_head=True
        )
    expected = float(out.itm_score.softmax(-1)[0, 1])
    np.testing.assert_allclose(itm, expected, rtol=1e-5, atol=1e-6)
    assert 0.0 <= itm <= 1.0
