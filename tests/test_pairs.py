"""Pair scoring in memory (``model.pair_scores``): text i with image i, each distinct image through
the ViT once, its cross-attention keys and values once for all its captions; the diagonal of the
score matrices. Then the tables and figures of :class:`blipviz.PairScores`."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import blipviz
from blipviz.analysis.pairs import PAIR_COLUMNS, distinct_images
from blipviz.errors import InputError
from blipviz.net.fast_attention import cross_attention_modules
from blipviz.testing import assert_close, net_depth, synthetic_images

CAPTIONS = [
    "a dog running on the beach",
    "two cats sleeping on a red sofa",
    "it costs $5 and $10_x^2",
    "an empty street at night",
    "a man riding a bicycle",
]
LONG_CAPTION = " ".join(["a very long caption about a dog"] * 8)  # about 57 tokens: cut at 35


@pytest.fixture
def vit_images(tiny, monkeypatch):
    """Counts the images that pass the ViT (through the net's ``vision_states`` port)."""
    seen: list[int] = []
    original = tiny.vision_states

    def counting(pixels):
        seen.append(int(pixels.shape[0]))
        return original(pixels)

    monkeypatch.setattr(tiny, "vision_states", counting)
    return seen


@pytest.fixture
def key_states(tiny):
    """Per cross-attention layer, the image states its key projection was given (batch sizes)."""
    modules = cross_attention_modules(tiny.hf)
    seen: list[list[int]] = [[] for _ in modules]
    handles = [
        m.key.register_forward_hook(lambda mod, args, out, k=k: seen[k].append(int(args[0].shape[0])))
        for k, m in enumerate(modules)
    ]
    yield seen
    for h in handles:
        h.remove()
    assert all(not m.key._forward_hooks for m in modules)


def _diagonal(matrix) -> np.ndarray:
    return np.diag(np.asarray(matrix))


# ------------------------------------------------------------------------------------ scores
def test_pair_scores_are_the_diagonal_of_the_score_matrices(tiny):
    images = synthetic_images(5)
    pairs = tiny.pair_scores(images, CAPTIONS)
    itm, cosine = tiny.scores(images, CAPTIONS)
    depth = net_depth(tiny)
    assert_close(pairs.itm, _diagonal(itm), depth=depth, magnitude=1.0)
    assert_close(pairs.cosine, _diagonal(cosine), depth=depth, magnitude=1.0)
    frame = pairs.to_pandas()
    assert list(frame.columns) == list(PAIR_COLUMNS)
    assert frame["image"].tolist() == itm.image_labels == [f"image {i}" for i in range(5)]
    assert frame["text"].tolist() == CAPTIONS
    assert frame["truncated"].dtype == bool and not frame["truncated"].any()
    assert frame.index.name == "pair" and frame.index.tolist() == list(range(5))
    assert pairs.model_name == tiny.name and len(pairs) == 5
    assert isinstance(pairs, blipviz.PairScores)


def test_itm_logit_is_the_match_logit_of_the_multimodal_pass(tiny):
    images = synthetic_images(3)
    pairs = tiny.pair_scores(images, CAPTIONS[:3])
    features = tiny.encode_images(images)
    with torch.inference_mode():
        logits = tiny.itm_logits(tiny.tokenize(CAPTIONS[:3]), features.raw)  # text i with image i
    depth = net_depth(tiny)
    assert_close(pairs.itm_logit, logits[:, 1], depth=depth)
    assert_close(pairs.itm, logits.softmax(-1)[:, 1], depth=depth, magnitude=1.0)
    # the probability is the logistic of the logit difference
    assert_close(pairs.itm, 1 / (1 + np.exp(-(logits[:, 1] - logits[:, 0]).double().numpy())), depth=depth)


def test_each_distinct_image_passes_the_vit_once(tiny, vit_images, key_states):
    a, b, c = synthetic_images(3)
    images = [a, b, a, a, c, b]  # three distinct objects, six pairs
    texts = [*CAPTIONS, "a bowl of fruit"]
    pairs = tiny.pair_scores(images, texts)
    assert sum(vit_images) == 3
    # each image's states reach every cross-attention layer's key projection once, whatever the
    # number of its captions: keys and values are computed once per image and layer
    assert [sum(layer) for layer in key_states] == [3] * len(key_states)
    assert pairs.image_index.tolist() == [0, 1, 0, 0, 2, 1]
    assert pairs.image_labels == ["image 0", "image 1", "image 0", "image 0", "image 4", "image 1"]
    assert len(pairs.thumbnails) == 3
    full_itm, full_cos = tiny.scores(images, texts)
    depth = net_depth(tiny)
    assert_close(pairs.itm, _diagonal(full_itm), depth=depth, magnitude=1.0)
    assert_close(pairs.cosine, _diagonal(full_cos), depth=depth, magnitude=1.0)


def test_one_caption_per_image_is_one_gathered_multimodal_pass(tiny, key_states):
    images = synthetic_images(4)
    tiny.pair_scores(images, CAPTIONS[:4], batch_size=4)
    # one ViT batch of four images with one caption each: one pass, text i with state i
    assert key_states[0] == [4]


def test_the_same_path_or_bytes_is_one_image(tiny, tmp_path, vit_images):
    a, b = synthetic_images(2)
    path_a, path_b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(a).save(path_a)
    Image.fromarray(b).save(path_b)
    data_b = path_b.read_bytes()
    images = [str(path_a), path_b, str(path_a), path_a, data_b, bytes(data_b)]
    texts = [CAPTIONS[0], CAPTIONS[1], CAPTIONS[2], CAPTIONS[3], CAPTIONS[1], CAPTIONS[4]]
    pairs = tiny.pair_scores(images, texts)
    assert sum(vit_images) == 3  # path a, path b, the bytes of b
    assert pairs.image_labels == ["a.png", "b.png", "a.png", "a.png", "image 4", "image 4"]
    assert pairs.image_index.tolist() == [0, 1, 0, 0, 2, 2]
    # the same pixels score the same, whichever way they were given
    assert_close(pairs.itm[4], pairs.itm[1], depth=net_depth(tiny), magnitude=1.0)
    assert_close(pairs.cosine[4], pairs.cosine[1], depth=net_depth(tiny), magnitude=1.0)


def test_distinct_images_keys():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()  # equal pixels, another object: another image (arrays are compared by identity)
    first, index = distinct_images([a, b, a, "x.png", "x.png", b"\x01", b"\x01"])
    assert first == [0, 1, 3, 5]
    assert index.tolist() == [0, 1, 0, 2, 2, 3, 3]


def test_every_input_kind_gives_the_same_scores(tiny, tmp_path):
    arrays = synthetic_images(4)
    texts = CAPTIONS[:4]
    expected = tiny.pair_scores(arrays, texts)
    path = tmp_path / "photo.png"
    Image.fromarray(arrays[0]).save(path)
    buffer = io.BytesIO()
    Image.fromarray(arrays[2]).save(buffer, format="PNG")
    mixed = [path, Image.fromarray(arrays[1]), buffer.getvalue(), arrays[3].astype(np.float64) / 255.0]
    got = tiny.pair_scores(mixed, texts)
    depth = net_depth(tiny)
    assert_close(got.itm, expected.itm, depth=depth, magnitude=1.0)
    assert_close(got.cosine, expected.cosine, depth=depth, magnitude=1.0)
    assert got.image_labels == ["photo.png", "image 1", "image 2", "image 3"]
    # pixel tensors and features are taken row by row
    features = tiny.encode_images(arrays)
    from_features = tiny.pair_scores(features, texts)
    assert_close(from_features.itm, expected.itm, depth=depth, magnitude=1.0)
    pixels = tiny.preprocessing.pixel_values(arrays)
    from_pixels = tiny.pair_scores(pixels, texts)
    assert_close(from_pixels.itm, expected.itm, depth=depth, magnitude=1.0)
    assert from_pixels.thumbnails is None
    # text features too
    from_text_features = tiny.pair_scores(arrays, tiny.encode_texts(texts))
    assert_close(from_text_features.cosine, expected.cosine, depth=depth, magnitude=1.0)


def test_truncated_captions_are_flagged(tiny):
    images = synthetic_images(3)
    texts = [CAPTIONS[0], LONG_CAPTION, CAPTIONS[1]]
    with pytest.warns(blipviz.TruncationWarning, match="1 of 3 texts"):
        pairs = tiny.pair_scores(images, texts)
    assert pairs.to_pandas()["truncated"].tolist() == [False, True, False]
    assert pairs.truncated_by == [None, "tokens", None]
    assert pairs.texts[1] == LONG_CAPTION  # the caption as given, scored cut
    with pytest.warns(blipviz.TruncationWarning):
        itm = tiny.itm_scores(images, texts)
    assert_close(pairs.itm, _diagonal(itm), depth=net_depth(tiny), magnitude=1.0)


def test_mismatched_lengths_name_both(tiny):
    with pytest.raises(InputError, match=r"3 images and 2 texts"):
        tiny.pair_scores(synthetic_images(3), CAPTIONS[:2])
    with pytest.raises(InputError, match=r"1 images and 4 texts"):
        tiny.pair_scores(synthetic_images(1)[0], CAPTIONS[:4])


@pytest.mark.parametrize(("n_images", "n_texts"), [(0, 0), (0, 2), (2, 0)])
def test_empty_inputs_are_refused(tiny, n_images, n_texts):
    with pytest.raises(InputError, match="at least one pair"):
        tiny.pair_scores(synthetic_images(n_images) if n_images else [], CAPTIONS[:n_texts])


def test_one_image_and_one_text(tiny):
    image = synthetic_images(1)[0]
    pairs = tiny.pair_scores(image, "a dog")
    assert len(pairs) == 1
    assert_close(pairs.itm, _diagonal(tiny.itm_scores(image, "a dog")), depth=net_depth(tiny), magnitude=1.0)


# ------------------------------------------------------------------------------------ tables
def _pairs(itm, cosine=None, texts=None, thumbnails=True, **kw) -> blipviz.PairScores:
    n = len(itm)
    texts = texts if texts is not None else [f"caption {i}" for i in range(n)]
    cosine = cosine if cosine is not None else np.linspace(-0.2, 0.6, n)
    thumbs = synthetic_images(n, size=(24, 32)) if thumbnails else None
    return blipviz.PairScores(
        texts=texts,
        image_labels=[f"image {i}" for i in range(n)],
        itm=itm,
        itm_logit=np.log(np.asarray(itm) / (1 - np.asarray(itm))),
        cosine=cosine,
        thumbnails=None if thumbs is None else [Image.fromarray(t) for t in thumbs],
        model_name="tiny-random",
        **kw,
    )


def test_worst_and_best_sort_by_itm_and_keep_ties_in_order():
    pairs = _pairs([0.5, 0.1, 0.9, 0.1, 0.7])
    worst = pairs.worst(3)
    assert worst.index.tolist() == [1, 3, 0] and list(worst.columns) == list(PAIR_COLUMNS)
    assert pairs.best(2).index.tolist() == [2, 4]
    assert pairs.worst().index.tolist() == [1, 3, 0, 4, 2]  # n beyond the pairs: all of them
    assert pairs.best(10)["itm"].is_monotonic_decreasing
    with pytest.raises(InputError, match="n must be at least 1"):
        pairs.worst(0)
    assert pairs.kept(0.5).tolist() == [True, False, True, False, True]


def test_pair_scores_checks_its_lengths():
    with pytest.raises(InputError, match="one entry per pair"):
        blipviz.PairScores(
            texts=["a", "b"], image_labels=["x"], itm=[0.1, 0.2], itm_logit=[0, 0], cosine=[0, 0]
        )
    with pytest.raises(InputError, match="image_index must lie"):
        _pairs([0.1, 0.2], image_index=[0, 5])


def test_to_pandas_is_plain_data():
    frame = _pairs([0.2, 0.4]).to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert frame.dtypes["itm"] == np.float64 and frame.dtypes["truncated"] == np.dtype(bool)
