from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import blipviz
from blipviz.errors import InputError
from blipviz.testing import assert_close, net_depth, synthetic_images


@pytest.fixture
def count_vision(tiny, monkeypatch):
    calls = []
    original = tiny.hf.vision_model.forward

    def counting(*args, **kwargs):
        pixels = kwargs.get("pixel_values", args[0] if args else None)
        calls.append(int(pixels.shape[0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny.hf.vision_model, "forward", counting)
    return calls


def test_encode_images_shapes_and_norms(tiny, images):
    f = tiny.encode_images(images)
    assert f.embeddings.shape == (4, 256)
    assert f.projected.shape == (4, 256)
    assert f.raw.shape == (4, tiny.n_image_tokens, tiny.width) == (4, 65, 64)
    torch.testing.assert_close(f.embeddings.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(f.embeddings, torch.nn.functional.normalize(f.projected, dim=-1))
    assert f.labels == [f"image {i}" for i in range(4)]
    assert len(f.thumbnails) == 4 and max(f.thumbnails[0].size) <= 96
    assert tiny.encode_images(images, keep_raw=False).raw is None


def test_labels_come_from_file_names(tiny, images, tmp_path):
    from PIL import Image

    paths = []
    for i, im in enumerate(images[:2]):
        p = tmp_path / f"photo_{i}.png"
        Image.fromarray(im).save(p)
        paths.append(p)
    assert tiny.encode_images(paths).labels == ["photo_0.png", "photo_1.png"]
    assert tiny.itm_scores(paths, "x").image_labels == ["photo_0.png", "photo_1.png"]


def test_encode_texts(tiny, texts):
    t = tiny.encode_texts(texts)
    assert t.embeddings.shape == (5, 256)
    torch.testing.assert_close(t.embeddings.norm(dim=-1), torch.ones(5))
    assert t.tokens[2][0] == "[CLS]" and t.tokens[2][-1] == "[SEP]"
    assert t.normalized[2] == "a bowl of fresh fruit on a wooden table"
    assert t.truncated == [False] * 5


def test_cosine_is_the_dot_product_of_embeddings(tiny, images, texts):
    s = tiny.cosine_scores(images, texts)
    f, t = tiny.encode_images(images), tiny.encode_texts(texts)
    expected = f.embeddings.double().numpy() @ t.embeddings.double().numpy().T
    assert_close(s, expected, depth=net_depth(tiny), magnitude=1.0)
    assert s.kind == "cosine" and s.shape == (4, 5)
    assert np.all(np.abs(np.asarray(s)) <= 1)


def test_itm_scores_equal_the_multimodal_encoder(tiny, images, texts):
    s = tiny.itm_scores(images, texts)
    f = tiny.encode_images(images)
    for i in range(4):
        probs = tiny.multimodal_encoder(texts, f[i])
        assert probs.shape == (5, 2)
        torch.testing.assert_close(probs.sum(-1), torch.ones(5, dtype=probs.dtype))
        assert_close(np.asarray(s)[i], probs[:, 1], depth=net_depth(tiny), magnitude=1.0)
    # paired mode: text i with image i
    paired = tiny.multimodal_encoder(texts[:4], f)
    assert_close(paired[:, 1], np.diag(np.asarray(s)[:, :4]), depth=net_depth(tiny), magnitude=1.0)


def test_scores_vary_with_inputs(tiny, images, texts):
    """The offline nets are informative: scores differ across images and across texts."""
    s = np.asarray(tiny.itm_scores(images, texts))
    assert s.std(axis=0).mean() > 0.01 and s.std(axis=1).mean() > 0.01
    assert len({tuple(np.argsort(row)) for row in s}) > 1  # rankings differ between images


@pytest.mark.slow
def test_full_size_offline_net_scores_depend_on_the_text(full_b, images, texts):
    """On the full geometry (12 cross-attention layers) the image does not drown the text: an image's
    ITM logits vary from text to text at least a quarter as much as from image to image, and each
    image's probabilities spread. Measured here: std 0.71 within an image against 1.45 across images;
    0.12 against 4.3 before informative_init_'s depth correction."""
    with torch.inference_mode():
        feats = full_b.encode_images(images, keep_raw=True)
        logits = torch.stack(
            [full_b.itm_logits(full_b.tokenize(texts), feats.raw[i : i + 1]) for i in range(len(images))]
        )
    margin = (logits[..., 1] - logits[..., 0]).numpy()  # (images, texts)
    within, across = margin.std(axis=1).mean(), margin.mean(axis=1).std()
    assert within > 0.25 * across, (within, across)
    probs = np.asarray(full_b.itm_scores(feats, texts))
    spread = probs.max(axis=1) - probs.min(axis=1)
    assert spread.mean() > 0.15, spread  # measured 0.34


def test_each_image_passes_the_vision_encoder_once(tiny, images, texts, count_vision):
    tiny.itm_scores(images, texts, batch_size=3)
    assert sum(count_vision) == 4 and count_vision == [3, 1]
    count_vision.clear()
    tiny.rank(images[0], texts * 4)
    assert count_vision == [1]
    count_vision.clear()
    feats = tiny.encode_images(images)
    count_vision.clear()
    tiny.itm_scores(feats, texts)
    tiny.cosine_scores(feats, texts)
    assert count_vision == []


def test_default_image_batch_is_four_on_cpu(tiny, texts, count_vision):
    """Left out, ``batch_size`` is 4 on CPU (the ViT's best throughput there, least memory); the
    scores do not depend on it."""
    assert tiny.device.type == "cpu" and tiny.default_batch_size == 4
    images = synthetic_images(9)
    default = np.asarray(tiny.itm_scores(images, texts))
    assert count_vision == [4, 4, 1]
    count_vision.clear()
    tiny.encode_images(images)
    assert count_vision == [4, 4, 1]
    assert_close(tiny.itm_scores(images, texts, batch_size=16), default, depth=net_depth(tiny), magnitude=1.0)


def test_features_and_images_give_the_same_scores(tiny, images, texts):
    direct = np.asarray(tiny.itm_scores(images, texts))
    via = np.asarray(tiny.itm_scores(tiny.encode_images(images), tiny.encode_texts(texts)))
    np.testing.assert_array_equal(direct, via)


def test_batch_sizes_agree(tiny, images, texts):
    a = np.asarray(tiny.itm_scores(images, texts, batch_size=1, text_batch_size=1))
    b = np.asarray(tiny.itm_scores(images, texts, batch_size=8, text_batch_size=8))
    assert_close(a, b, depth=net_depth(tiny), magnitude=1.0)


def test_scores_returns_both_matrices_consistently(tiny, images, texts):
    itm, cos = tiny.scores(images, texts)
    # the same batches through the same kernels: the very same numbers
    np.testing.assert_array_equal(np.asarray(itm), np.asarray(tiny.itm_scores(images, texts)))
    np.testing.assert_array_equal(np.asarray(cos), np.asarray(tiny.cosine_scores(images, texts)))


def test_rank_table(tiny, images, texts):
    table = tiny.rank(images[1], texts)
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["text", "itm", "cosine", "itm_rank", "cosine_rank"]
    assert len(table) == 5 and list(table.index) == [1, 2, 3, 4, 5]
    assert table["itm"].is_monotonic_decreasing
    assert sorted(table["cosine_rank"]) == [1, 2, 3, 4, 5]
    itm = np.asarray(tiny.itm_scores(images[1], texts))[0]
    assert table["text"].tolist() == [texts[i] for i in np.argsort(-itm, kind="stable")]
    with pytest.raises(InputError, match="one image"):
        tiny.rank(images[:2], texts)


def test_score_matrix_long_and_wide_forms(tiny, images, texts):
    s = tiny.itm_scores(images[:2], texts[:3])
    long = s.to_pandas()
    assert list(long.columns) == ["image", "text", "score", "image_index", "text_index"]
    assert len(long) == 6
    row = long.iloc[4]
    assert row["score"] == np.asarray(s)[row["image_index"], row["text_index"]]
    assert row["text"] == texts[row["text_index"]]
    assert s.to_frame().shape == (2, 3)


def test_empty_inputs_give_empty_matrices(tiny, images, texts):
    assert tiny.itm_scores([], texts).shape == (0, 5)
    assert tiny.itm_scores(images, []).shape == (4, 0)
    assert tiny.cosine_scores([], []).shape == (0, 0)
    assert tiny.encode_texts([]).embeddings.shape == (0, 256)


def test_pixel_tensor_input(tiny, images):
    pixels = torch.stack([tiny.preprocessing(blipviz.net.images.load_image(im)) for im in images])
    np.testing.assert_array_equal(
        np.asarray(tiny.itm_scores(pixels, "a photo")), np.asarray(tiny.itm_scores(images, "a photo"))
    )
    with pytest.raises(InputError, match=r"\(n, 3, 64, 64\)"):
        tiny.encode_images(torch.zeros(2, 3, 32, 32))


def test_features_from_another_architecture_are_refused(tiny, full_b):
    big = full_b.encode_images(synthetic_images(1), keep_raw=True)
    with pytest.raises(InputError, match=r"\(1, 577, 768\).*\(n, 65, 64\)"):
        tiny.itm_scores(big, "a photo")
    with pytest.raises(InputError, match="keep_raw=True"):
        tiny.itm_scores(tiny.encode_images(synthetic_images(1), keep_raw=False), "a photo")


def test_truncated_texts_are_recorded(tiny):
    with pytest.warns(blipviz.TruncationWarning, match="1 of 2 texts"):
        t = tiny.encode_texts(["short", "word " * 60])
    assert t.truncated == [False, True]
    assert len(t.tokens[1]) == 35


def test_image_labels_can_be_given(tiny, images, texts):
    names = ["a", "b", "c", "d"]
    assert tiny.itm_scores(images, texts, labels=names).image_labels == names
    assert tiny.cosine_scores(images, texts, labels=names).image_labels == names
    itm, cos = tiny.scores(images, texts, labels=names)
    assert itm.image_labels == cos.image_labels == names
    feats = tiny.encode_images(images)
    assert tiny.itm_scores(feats, texts, labels=names).image_labels == names
    assert tiny.cosine_scores(feats, texts, labels=names).image_labels == names
    assert feats.labels == [f"image {i}" for i in range(4)]  # the features themselves are unchanged
    with pytest.raises(InputError, match="got 3 labels for 4 images"):
        tiny.itm_scores(images, texts, labels=names[:3])
