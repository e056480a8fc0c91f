"""Every bad input gets a named, deliberate error; good-but-odd input gets the right answer."""

from __future__ import annotations

import io
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import blipviz
from blipviz.errors import (
    BlipvizError,
    ImageLoadError,
    InputError,
    InputTypeError,
    ModelLoadError,
    NumericalError,
    OfflineError,
)
from blipviz.testing import assert_close, net_depth, synthetic_images


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    good = root / "good.png"
    Image.fromarray(synthetic_images(1)[0]).save(good)
    data = good.read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "text.jpg").write_text("this is not a picture")
    (root / "empty.png").write_bytes(b"")
    return root


def _features_with(tiny, tensor_fn):
    f = tiny.encode_images(synthetic_images(2))
    f.raw = tensor_fn(f.raw.clone())
    return f


def _nan(raw):
    raw[1, 3, 5] = float("nan")
    return raw


def _numpy_features_with_nan(tiny):
    """ImageFeatures whose arrays are numpy arrays, with a NaN in image 1's raw states."""
    f = tiny.encode_images(synthetic_images(2))
    raw = f.raw.numpy().copy()
    raw[1, 3, 5] = np.nan
    return blipviz.ImageFeatures(f.embeddings.numpy(), f.projected.numpy(), raw, f.labels)


def _numpy_states_with_nan(tiny):
    raw = tiny.encode_images(synthetic_images(2)).raw.numpy().copy()
    raw[1, 3, 5] = np.nan
    return raw


def _without(backend):
    """Make this machine look as if it had no ``backend`` ("cuda" or "mps"), GPU or not."""
    flag = {"cuda": torch.cuda, "mps": torch.backends.mps}[backend]
    return mock.patch.object(flag, "is_available", return_value=False)


def _load_without(backend, device):
    with _without(backend):
        return blipviz.load_model("tiny-random", device=device)


def _load_with_two_gpus(device):
    with (
        mock.patch.object(torch.cuda, "is_available", return_value=True),
        mock.patch.object(torch.cuda, "device_count", return_value=2),
    ):
        return blipviz.load_model("tiny-random", device=device)


class Payload:
    """An arbitrary object inside a pickle checkpoint: torch's safe loader refuses it."""


def _pickle_checkpoint(tiny, root):
    """A save_pretrained folder whose weights are a pickle pytorch_model.bin holding an object."""
    folder = tiny.save_pretrained(root / "pickled")
    (folder / "model.safetensors").unlink(missing_ok=True)
    torch.save({"x": Payload()}, folder / "pytorch_model.bin")
    return folder


def _net_with_nan_weight():
    model = blipviz.load_model("tiny-random")  # float32; the shared fixture stays untouched
    with torch.no_grad():
        model.hf.vision_model.post_layernorm.weight[0] = float("nan")
    return model


# (id, call(model, files), exception type, pattern the message must contain)
CASES = [
    (
        "missing file",
        lambda m, d: m.encode_images([d / "good.png", d / "nope.png"]),
        ImageLoadError,
        r"image 1 \('.*nope\.png'\): no such file",
    ),
    (
        "truncated file",
        lambda m, d: m.encode_images([d / "truncated.png"]),
        ImageLoadError,
        r"image 0 \('.*truncated\.png'\).*(decoded|readable)",
    ),
    (
        "not an image",
        lambda m, d: m.itm_scores([d / "good.png", d / "text.jpg"], "x"),
        ImageLoadError,
        r"image 1 \('.*text\.jpg'\): not a readable image",
    ),
    ("empty file", lambda m, d: m.encode_images(d / "empty.png"), ImageLoadError, r"empty\.png"),
    (
        "None image",
        lambda m, d: m.encode_images([d / "good.png", None]),
        InputTypeError,
        r"image 1: expected a PIL image.*got NoneType",
    ),
    ("number image", lambda m, d: m.cosine_scores([3.5], "x"), InputTypeError, r"image 0.*float"),
    ("images=None", lambda m, d: m.encode_images(None), InputTypeError, r"got None"),
    (
        "bad array shape",
        lambda m, d: m.encode_images(np.zeros((5, 5, 7), np.uint8)),
        InputError,
        r"image 0: a numpy image must have shape",
    ),
    (
        "float out of range",
        lambda m, d: m.encode_images(np.full((5, 5, 3), 3.0)),
        InputError,
        r"image 0: a float image must lie in \[0, 1\]",
    ),
    ("float NaN", lambda m, d: m.encode_images(np.full((5, 5), np.nan)), InputError, r"NaN or inf"),
    ("int16 array", lambda m, d: m.encode_images(np.zeros((5, 5), np.int16)), InputError, r"dtype int16"),
    (
        "zero-size array",
        lambda m, d: m.encode_images(np.zeros((0, 5, 3), np.uint8)),
        InputError,
        r"no pixels",
    ),
    ("non-str text", lambda m, d: m.encode_texts(["ok", None]), InputTypeError, r"texts\[1\] must be a str"),
    ("number text", lambda m, d: m.itm_scores(synthetic_images(1), ["a", 7]), InputTypeError, r"texts\[1\]"),
    ("texts=None", lambda m, d: m.encode_texts(None), InputTypeError, r"got NoneType"),
    ("bytes as texts", lambda m, d: m.encode_texts(b"abc"), InputTypeError, r"bytes"),
    (
        "NaN features",
        lambda m, d: m.itm_scores(_features_with(m, _nan), "x"),
        InputError,
        r"NaN or inf values \(images \[1\]\)",
    ),
    (
        "wrong width states",
        lambda m, d: m.multimodal_encoder("x", torch.zeros(1, 65, 32)),
        InputError,
        r"shape \(1, 65, 32\).*\(n, 65, 64\)",
    ),
    (
        "count mismatch",
        lambda m, d: m.multimodal_encoder(["a", "b", "c"], m.encode_images(synthetic_images(2))),
        InputError,
        r"\(2, 65, 64\) for 3 texts",
    ),
    (
        "raw not kept",
        lambda m, d: m.multimodal_encoder("a", m.encode_images(synthetic_images(1), keep_raw=False)),
        InputError,
        r"keep_raw=True",
    ),
    (
        "batch_size 0",
        lambda m, d: m.itm_scores(synthetic_images(1), "a", batch_size=0),
        InputError,
        r"batch_size must be at least 1",
    ),
    (
        "batch_size 0 with features",
        lambda m, d: m.itm_scores(m.encode_images(synthetic_images(2)), "a", batch_size=0),
        InputError,
        r"batch_size must be at least 1",
    ),
    (
        "batch_size not a whole number",
        lambda m, d: m.encode_images(synthetic_images(2), batch_size=2.5),
        InputError,
        r"batch_size must be at least 1 \(a whole number\), got 2.5",
    ),
    (
        "zero-shot batch_size 0",
        lambda m, d: blipviz.ZeroShotClassifier(m, ["cat", "dog"], batch_size=0),
        InputError,
        r"batch_size must be at least 1",
    ),
    (
        "text_batch_size 0",
        lambda m, d: m.itm_scores(synthetic_images(1), "a", text_batch_size=0),
        InputError,
        r"text_batch_size must be at least 1",
    ),
    (
        "wrong pixel shape",
        lambda m, d: m.encode_images(torch.zeros(1, 3, 10, 10)),
        InputError,
        r"\(n, 3, 64, 64\)",
    ),
    ("two images to rank", lambda m, d: m.rank(synthetic_images(2), "a"), InputError, r"one image"),
    (
        "unknown first_token",
        lambda m, d: blipviz.load_model("tiny-random", first_token="x"),
        ValueError,
        r"'enc', 'cls'",
    ),
    (
        "cuda without CUDA",
        lambda m, d: _load_without("cuda", "cuda"),
        InputError,
        r"device 'cuda': CUDA is not available on this machine; it has: 'cpu'",
    ),
    (
        "mps without MPS",
        lambda m, d: _load_without("mps", "mps"),
        InputError,
        r"device 'mps': MPS .* not available on this machine; it has: 'cpu'",
    ),
    (
        "GPU index past the last GPU",
        lambda m, d: _load_with_two_gpus("cuda:5"),
        InputError,
        r"device 'cuda:5': this machine has 2 cuda devices: 'cpu', 'cuda:0', 'cuda:1'",
    ),
    (
        "not a device",
        lambda m, d: blipviz.load_model("tiny-random", device="gpu"),
        InputError,
        r"device 'gpu' is not a device string; this machine has: 'cpu'",
    ),
    (
        "seed None",
        lambda m, d: blipviz.load_model("tiny-random", seed=None),
        InputTypeError,
        r"seed must be an int",
    ),
    (
        "encode_texts batch_size 0",
        lambda m, d: m.encode_texts(["a", "b"], batch_size=0),
        InputError,
        r"batch_size must be at least 1",
    ),
    (
        "NaN features as numpy arrays",
        lambda m, d: m.itm_scores(_numpy_features_with_nan(m), "x"),
        InputError,
        r"NaN or inf values \(images \[1\]\)",
    ),
    (
        "NaN states as a numpy array",
        lambda m, d: m.match_probabilities(["a", "b"], _numpy_states_with_nan(m)),
        InputError,
        r"image states contain NaN or inf values \(images \[1\]\)",
    ),
    (
        "states as a string array",
        lambda m, d: m.multimodal_encoder("a", np.array([["x"]])),
        InputTypeError,
        r"image_features must be a Tensor or a numeric numpy array, got a numpy array of dtype <U1",
    ),
    (
        "missing folder that could be a hub id",
        lambda m, d: blipviz.load_model("no-such-dir-4/blip"),
        OfflineError,
        r"no folder '/.*no-such-dir-4/blip' exists, and as a hub id, checkpoint 'no-such-dir-4/blip' "
        r"is not in the local Hugging Face cache",
    ),
    (
        "missing ./folder",
        lambda m, d: blipviz.load_model("./no-such-dir-4"),
        ModelLoadError,
        r"no such folder: '/.*no-such-dir-4'",
    ),
    (
        "pickle weights the safe loader refuses",
        lambda m, d: blipviz.load_model(_pickle_checkpoint(m, d)),
        ModelLoadError,
        r"(?s)^(?!.*weights_only=False)(?!.*safe_globals).*pickled.* holds pickle weights .*Payload.*"
        r"Only safetensors .* or weights loadable with torch's safe loader",
    ),
    (
        "NaN weights in a float32 net",
        lambda m, d: _net_with_nan_weight().encode_images(synthetic_images(1)),
        NumericalError,
        r"(?s)^(?!.*dtype=torch\.float32).*in float32: the weights themselves hold NaN or inf "
        r"\(1 of \d+ weight tensors: vision_model\.post_layernorm\.weight\)",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_table(tiny, files, call, exc, pattern):
    with pytest.raises(exc, match=pattern) as info:
        call(tiny, files)
    assert isinstance(info.value, BlipvizError)


def test_features_and_states_as_numpy_arrays_score_as_tensors(tiny):
    f = tiny.encode_images(synthetic_images(2))
    texts = ["a dog", "two cats"]
    as_numpy = blipviz.ImageFeatures(f.embeddings.numpy(), f.projected.numpy(), f.raw.numpy(), f.labels)
    np.testing.assert_array_equal(
        np.asarray(tiny.itm_scores(as_numpy, texts)), np.asarray(tiny.itm_scores(f, texts))
    )
    np.testing.assert_array_equal(
        np.asarray(tiny.cosine_scores(as_numpy, texts)), np.asarray(tiny.cosine_scores(f, texts))
    )
    torch.testing.assert_close(
        tiny.match_probabilities(texts, f.raw.numpy()), tiny.match_probabilities(texts, f.raw), rtol=0, atol=0
    )


def test_decompression_bombs_are_refused(tiny, files, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # good.png has 48 x 64 > 2 x 100 pixels
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        tiny.encode_images(files / "good.png")


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_pillow_mode_scores_deterministically(tiny, mode):
    rgb = Image.fromarray(synthetic_images(1, seed=4)[0])
    gray = np.asarray(rgb.convert("L"))
    if mode == "I;16":
        img = Image.fromarray(gray.astype(np.uint16) * 257)
    elif mode == "I":
        img = Image.fromarray(gray.astype(np.int32) * 257)
    elif mode == "F":
        img = Image.fromarray(gray.astype(np.float32) / 255)
    else:
        img = rgb.convert(mode)
    assert img.mode == mode
    a = np.asarray(tiny.itm_scores([img], ["a red sofa", "a dog"]))
    b = np.asarray(tiny.itm_scores([img.copy()], ["a red sofa", "a dog"]))
    np.testing.assert_array_equal(a, b)
    if mode in ("I;16", "I", "F"):  # high bit depth is rescaled, so it sees the same picture as mode L
        expected = np.asarray(tiny.itm_scores([Image.fromarray(gray)], ["a red sofa", "a dog"]))
        assert_close(a, expected, depth=net_depth(tiny), magnitude=1.0)
    else:  # everything else is exactly Pillow's convert("RGB"), as BLIP's dataset code does
        expected = np.asarray(tiny.itm_scores([img.convert("RGB")], ["a red sofa", "a dog"]))
        np.testing.assert_array_equal(a, expected)


def test_numpy_batches_and_float_images(tiny):
    stack = np.stack(synthetic_images(3))
    assert tiny.encode_images(stack).embeddings.shape == (3, 256)
    as_float = stack[0].astype(np.float32) / 255
    assert_close(
        tiny.itm_scores(as_float, "x"), tiny.itm_scores(stack[0], "x"), depth=net_depth(tiny), magnitude=1.0
    )


def test_odd_but_valid_images_work(tiny):
    out = tiny.itm_scores(
        [np.zeros((1, 1, 3), np.uint8), np.zeros((2, 900), np.uint8), np.zeros((700, 3, 4), np.uint8)], "x"
    )
    assert out.shape == (3, 1) and np.all(np.isfinite(np.asarray(out)))


def test_empty_and_punctuation_texts_are_scored(tiny):
    s = np.asarray(tiny.itm_scores(synthetic_images(1), ["", "   ", "?!.", "a dog"]))
    assert np.all((s >= 0) & (s <= 1))
    tok = tiny.tokenize(["", "   "])
    assert torch.equal(tok.input_ids[0], tok.input_ids[1])  # both are [CLS] [SEP] ([ENC] [SEP] for ITM)
    # the same tokens at two batch positions: equal up to the kernels' rounding
    assert_close(s[0, 0], s[0, 1], depth=net_depth(tiny), magnitude=1.0)


def test_long_texts_are_truncated_and_recorded(tiny):
    with pytest.warns(blipviz.TruncationWarning, match="1 of 2 texts"):
        t = tiny.encode_texts(["a " * 100, "short"])
    assert t.truncated == [True, False]
    with pytest.warns(blipviz.TruncationWarning, match="1 of 1 text was cut to 35 tokens"):
        long_score = np.asarray(tiny.itm_scores(synthetic_images(1), ["a " * 100]))
    capped = np.asarray(tiny.itm_scores(synthetic_images(1), ["a " * 33]))  # 33 words + [CLS] + [SEP]
    np.testing.assert_array_equal(long_score, capped)


def test_bytes_buffers_are_images(tiny, files):
    data = (files / "good.png").read_bytes()
    np.testing.assert_array_equal(
        np.asarray(tiny.itm_scores(data, "x")), np.asarray(tiny.itm_scores(files / "good.png", "x"))
    )
    buf = io.BytesIO(data)
    np.testing.assert_array_equal(
        np.asarray(tiny.itm_scores(Image.open(buf), "x")), np.asarray(tiny.itm_scores(data, "x"))
    )


# ------------------------------------------------------------------------------ property tests

words = st.sampled_from(["a", "dog", "red", "sofa", "beach", "two", "cats", "night", "!", "(big)", "street"])
texts_strategy = st.lists(st.lists(words, max_size=12).map(" ".join), min_size=1, max_size=6)
PROPS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPS
@given(texts=texts_strategy, seed=st.integers(0, 1000))
def test_scores_lie_in_their_ranges(tiny, texts, seed):
    images = synthetic_images(2, seed=seed)
    itm, cos = tiny.scores(images, texts)
    assert np.all((np.asarray(itm) >= 0) & (np.asarray(itm) <= 1))
    assert np.all(np.abs(np.asarray(cos)) <= 1 + 1e-12)


@PROPS
@given(texts=texts_strategy, data=st.data())
def test_permuting_texts_permutes_columns(tiny, texts, data):
    perm = data.draw(st.permutations(range(len(texts))))
    images = synthetic_images(2)
    a = np.asarray(tiny.itm_scores(images, texts))
    b = np.asarray(tiny.itm_scores(images, [texts[i] for i in perm]))
    assert_close(b, a[:, list(perm)], depth=net_depth(tiny), magnitude=1.0)


@PROPS
@given(texts=texts_strategy)
def test_batch_size_one_and_eight_agree(tiny, texts):
    images = synthetic_images(3)
    a = np.asarray(tiny.itm_scores(images, texts, batch_size=1, text_batch_size=1))
    b = np.asarray(tiny.itm_scores(images, texts, batch_size=8, text_batch_size=8))
    assert_close(a, b, depth=net_depth(tiny), magnitude=1.0)


@PROPS
@given(texts=texts_strategy)
def test_same_call_twice_is_bit_identical(tiny, texts):
    images = synthetic_images(2)
    np.testing.assert_array_equal(
        np.asarray(tiny.itm_scores(images, texts)), np.asarray(tiny.itm_scores(images, texts))
    )
    np.testing.assert_array_equal(
        np.asarray(tiny.cosine_scores(images, texts)), np.asarray(tiny.cosine_scores(images, texts))
    )


def test_no_test_can_reach_the_network():
    import socket

    with pytest.raises(Exception, match="socket"):
        socket.create_connection(("example.org", 80), timeout=1)


@pytest.mark.parametrize(
    ("module", "call", "what"),
    [
        ("vision_model.post_layernorm", lambda m, im, t: m.encode_images(im), "image embeddings"),
        ("text_encoder.embeddings.LayerNorm", lambda m, im, t: m.encode_texts(t), "text embeddings"),
        ("text_encoder.embeddings.LayerNorm", lambda m, im, t: m.itm_scores(im, t), "ITM logits"),
    ],
)
def test_float16_overflow_is_a_named_error_not_nan_scores(module, call, what):
    """A float16 net whose activations overflow (made so here by scaling a LayerNorm past 65504)
    raises NumericalError instead of returning NaN as scores."""
    import torch

    model = blipviz.load_model("tiny-random", dtype=torch.float16)
    images, texts = synthetic_images(2), ["a dog", "two cats on a red sofa"]
    call(model, images, texts)  # finite as built
    with torch.no_grad():
        model.hf.get_submodule(module).weight.fill_(6e4)
    with pytest.raises(blipviz.NumericalError, match=f"{what} came out NaN or inf .* in float16"):
        call(model, images, texts)
