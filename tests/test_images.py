import io

import numpy as np
import pytest
import torch
from PIL import Image

from blipviz.errors import ImageLoadError, InputError, InputTypeError
from blipviz.net.images import BLIP_IMAGE_MEAN, BLIP_IMAGE_STD, ImagePreprocessing, load_image
from blipviz.testing import synthetic_images as make_images


@pytest.fixture
def rgb_array():
    return make_images(1, seed=3, size=(37, 53))[0]


def test_pil_path_bytes_and_numpy_give_identical_pixels(rgb_array, tmp_path):
    pre = ImagePreprocessing(64)
    pil = Image.fromarray(rgb_array)
    path = tmp_path / "x.png"
    pil.save(path)
    variants = [pil, str(path), path, path.read_bytes(), rgb_array, rgb_array.astype(np.float64) / 255.0]
    pixels = [pre(load_image(v)) for v in variants]
    for p in pixels[1:]:
        assert torch.equal(p, pixels[0])


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "1", "LA", "CMYK"])
def test_modes_convert_like_pil_convert_rgb(rgb_array, mode, tmp_path):
    img = Image.fromarray(rgb_array).convert(mode)
    expected = np.asarray(img.convert("RGB"))
    assert np.array_equal(np.asarray(load_image(img)), expected)
    if mode != "CMYK":
        path = tmp_path / f"x_{mode}.png"
        img.save(path)
        assert np.array_equal(np.asarray(load_image(path)), np.asarray(Image.open(path).convert("RGB")))


def test_grayscale_numpy_equals_mode_L(rgb_array):
    gray = np.asarray(Image.fromarray(rgb_array).convert("L"))
    assert np.array_equal(np.asarray(load_image(gray)), np.asarray(Image.fromarray(gray).convert("RGB")))


def test_sixteen_bit_is_scaled_not_clipped():
    arr = (np.linspace(0, 65535, 64 * 8).reshape(8, 64)).astype(np.uint16)
    img = Image.fromarray(arr)
    assert img.mode == "I;16"
    out = np.asarray(load_image(img))
    assert out.max() == 255 and out.min() == 0
    assert len(np.unique(out[..., 0])) > 100


def test_preprocessing_matches_blip_transform_by_hand(rgb_array):
    pre = ImagePreprocessing(384)
    img = Image.fromarray(rgb_array)
    resized = np.asarray(img.resize((384, 384), Image.Resampling.BICUBIC)).astype(np.float32) / 255
    expected = (resized - np.array(BLIP_IMAGE_MEAN, dtype=np.float32)) / np.array(
        BLIP_IMAGE_STD, dtype=np.float32
    )
    got = pre(img)
    assert got.shape == (3, 384, 384) and got.dtype == torch.float32
    np.testing.assert_allclose(got.permute(1, 2, 0).numpy(), expected, rtol=0, atol=1e-6)


def test_preprocessing_equals_hf_model_card_processor(rgb_array):
    from transformers import BlipImageProcessorPil

    img = Image.fromarray(rgb_array)
    ref = BlipImageProcessorPil()(images=img, return_tensors="pt").pixel_values[0]
    assert torch.allclose(ImagePreprocessing(384)(img), ref, atol=1e-6)


def test_exif_orientation_is_applied(rgb_array):
    img = Image.fromarray(rgb_array)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    loaded = load_image(buf.getvalue())
    assert loaded.size == (img.height, img.width)


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "missing.png", 2)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ImageLoadError, match=r"notes\.png"):
        load_image(bad, 0)
    with pytest.raises(InputTypeError, match="image 5"):
        load_image(None, 5)
    with pytest.raises(InputError, match="shape"):
        load_image(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        load_image(np.full((4, 4), 2.0))


def test_tiny_and_extreme_aspect_images_work():
    pre = ImagePreprocessing(64)
    for shape in [(1, 1, 3), (1, 500, 3), (300, 2)]:
        out = pre(load_image(np.full(shape, 128, dtype=np.uint8)))
        assert out.shape == (3, 64, 64)


def _rotated_jpeg(rgb_array) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    Image.fromarray(rgb_array).save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def test_exif_rotation_is_an_explicit_option(rgb_array, tmp_path):
    data = _rotated_jpeg(rgb_array)
    stored = Image.open(io.BytesIO(data)).convert("RGB")  # BLIP's dataset code
    assert stored.size == (rgb_array.shape[1], rgb_array.shape[0])
    upright = ImagePreprocessing(64)
    assert upright.exif_transpose
    assert upright.load(data).size == (stored.height, stored.width)
    blip = ImagePreprocessing(64, exif_transpose=False)
    assert np.array_equal(np.asarray(blip.load(data)), np.asarray(stored))
    assert np.array_equal(np.asarray(load_image(data, exif_transpose=False)), np.asarray(stored))
    path = tmp_path / "sideways.jpg"
    path.write_bytes(data)
    assert blip.pixel_values([path]).shape == (1, 3, 64, 64)
    assert torch.equal(blip.pixel_values([path])[0], blip(stored))
    assert not torch.equal(upright.pixel_values([path])[0], blip(stored))


def test_a_net_loads_photos_by_its_preprocessing_exif_rule(tiny, rgb_array):
    import dataclasses

    import blipviz

    data = _rotated_jpeg(rgb_array)
    stored = Image.open(io.BytesIO(data)).convert("RGB")
    net = blipviz.BlipITM(
        tiny.hf, name="tiny", preprocessing=dataclasses.replace(tiny.preprocessing, exif_transpose=False)
    )
    blip_features = net.encode_images([data])
    assert blip_features.thumbnails[0].size[0] > blip_features.thumbnails[0].size[1]  # stored, wide
    torch.testing.assert_close(
        blip_features.raw, tiny.encode_images([Image.fromarray(np.asarray(stored))]).raw
    )
    upright = tiny.encode_images([data])
    assert upright.thumbnails[0].size[0] < upright.thumbnails[0].size[1]  # turned upright, tall
    assert not torch.allclose(upright.raw, blip_features.raw)
