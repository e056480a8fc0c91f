import numpy as np
import pytest
import torch

import blipviz
from blipviz.analysis.attention import default_layer
from blipviz.display.attention import AttentionGridDisplay
from blipviz.display.labels import number_repeats
from blipviz.net.images import ImagePreprocessing
from blipviz.testing import assert_close, net_depth

TEXT = "a dog on a bench"


@pytest.fixture(scope="module")
def attention(tiny_model, small_images):
    return tiny_model.cross_attention(small_images[0], TEXT)


@pytest.fixture(scope="module")
def other_geometry():
    """A net whose geometry differs from the tiny one: 48 px in 8 px patches (6 x 6), 3 layers, 2 heads."""
    from transformers import BlipConfig, BlipForImageTextRetrieval

    from blipviz.net.random_weights import informative_init_
    from blipviz.testing import TINY_GEOMETRY

    vision = dict(TINY_GEOMETRY["vision"], image_size=48, num_attention_heads=2)
    text = dict(TINY_GEOMETRY["text"], num_hidden_layers=3, num_attention_heads=2, hidden_size=32)
    config = BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=256)
    hf = informative_init_(BlipForImageTextRetrieval(config), 1)
    return blipviz.BlipITM(hf, name="other", preprocessing=ImagePreprocessing(48))


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _hooks(model):
    """Every hook on every module of the net, plus torch's global module hooks.

    transformers (v5) installs its own inert output-capturing forward hooks on the first forward
    pass of any kind; they are part of the wrapped model, so the check is "nothing added"."""
    from torch.nn.modules import module as mod

    found = {
        (name, kind, key)
        for name, module in model.hf.named_modules()
        for kind in _HOOK_DICTS
        for key in getattr(module, kind)
    }
    for kind in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks"):
        found |= {("global", kind, key) for key in getattr(mod, kind)}
    return found


@pytest.fixture
def no_hooks_added(tiny_model, small_images):
    tiny_model.itm_scores(small_images[0], TEXT)  # any forward pass: transformers' own hooks
    before = _hooks(tiny_model)
    yield
    assert _hooks(tiny_model) == before
    assert all(p.grad is None for p in tiny_model.hf.parameters())


def test_cross_attention_shape_tokens_and_rows(attention, tiny_model):
    cfg = tiny_model.config
    n_layers, n_heads = cfg.text_config.num_hidden_layers, cfg.text_config.num_attention_heads
    assert attention.tokens == ["[ENC]", "a", "dog", "on", "a", "bench", "[SEP]"]
    assert attention.weights.shape == (n_layers, n_heads, 7, tiny_model.n_image_tokens)
    assert attention.grid == tiny_model.grid
    assert_close(attention.weights.sum(-1), np.ones(attention.weights.shape[:-1]))
    assert (attention.weights >= 0).all()


def test_cross_attention_is_the_itm_pass(attention, tiny_model, small_images):
    # same pass as the ITM score (through the exact attention, which returns weights): same probability
    expected = tiny_model.itm_scores(small_images[0], TEXT).values[0, 0]
    assert_close(attention.score, expected, depth=net_depth(tiny_model), magnitude=1.0)
    # and it differs from a pass with [CLS] first
    cls_net = blipviz.BlipITM(
        tiny_model.hf, name="cls", preprocessing=tiny_model.preprocessing, first_token="cls"
    )
    with_cls = cls_net.cross_attention(small_images[0], TEXT)
    assert with_cls.tokens[0] == "[CLS]"
    assert not np.allclose(with_cls.weights, attention.weights)


def test_maps_drop_cls_reshape_mean_heads_subtract_min(attention):
    g = attention.grid
    raw = attention.maps(1, heads="mean", subtract_min=False)
    expected = attention.weights[1].mean(0)[:, 1:].reshape(len(attention.tokens), *g)
    np.testing.assert_allclose(raw, expected, rtol=1e-6)
    one = attention.maps(0, heads=2, subtract_min=False)
    np.testing.assert_allclose(one[3], attention.weights[0, 2, 3, 1:].reshape(g), rtol=1e-6)
    two = attention.maps(0, heads=[0, 3], subtract_min=False)
    np.testing.assert_allclose(two, attention.weights[0, [0, 3]].mean(0)[:, 1:].reshape(-1, *g), rtol=1e-6)
    sub = attention.maps(1)
    np.testing.assert_allclose(sub.min(axis=0), 0.0, atol=1e-7)
    np.testing.assert_allclose(sub, raw - raw.min(axis=0, keepdims=True), atol=1e-7)
    np.testing.assert_allclose(attention.maps(-1), sub)


def test_maps_reject_bad_layer_and_heads(attention):
    with pytest.raises(ValueError, match=r"valid: 0 to 1"):
        attention.maps(2)
    with pytest.raises(ValueError, match="heads"):
        attention.maps(0, heads=4)
    with pytest.raises(ValueError, match="heads"):
        attention.maps(0, heads="max")


def test_plot_draws_one_labelled_matrix_per_token(attention):
    disp = attention.plot(0)
    assert isinstance(disp, AttentionGridDisplay)
    numbered = ["[ENC]", "a (1)", "dog", "on", "a (2)", "bench", "[SEP]"]
    assert [ax.get_title() for ax in disp.axes_] == numbered == disp.titles_
    maps = attention.maps(0)
    for image, expected in zip(disp.images_, maps, strict=True):
        np.testing.assert_array_equal(image.get_array(), expected)
    sub = attention.plot(1, tokens=[2])
    assert len(sub.images_) == 1 and sub.axes_[0].get_title() == "dog"


def test_overlay_sizes_and_titles(attention, small_images):
    disp = attention.overlay(layer=1)
    h, w = small_images[0].shape[:2]
    assert len(disp.images_) == len(attention.tokens)
    assert all(a.shape == (h, w, 3) and a.dtype == np.uint8 for a in disp.arrays_)
    assert [ax.get_title() for ax in disp.axes_] == number_repeats(attention.tokens)
    big = np.zeros((300, 500, 3), dtype=np.uint8)
    assert attention.overlay(big, 0, tokens=[0, 1], size=100).arrays_[0].shape == (60, 100, 3)
    assert attention.overlay(np.zeros((900, 600, 3), dtype=np.uint8), 0, tokens=[0]).arrays_[0].shape == (
        384,
        256,
        3,
    )


def test_overlay_on_given_axes(attention):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4)
    disp = attention.overlay(layer=0, axes=axes)
    assert disp.figure_ is fig
    with pytest.raises(ValueError, match="need 7 Axes"):
        attention.overlay(layer=0, axes=axes[0])


def test_geometry_comes_from_the_config(other_geometry, small_images):
    ca = other_geometry.cross_attention(small_images[1], "two cats")
    assert ca.grid == (6, 6)
    assert ca.weights.shape == (3, 2, 4, 37)
    assert ca.maps(2).shape == (4, 6, 6)
    cam = other_geometry.gradcam(small_images[1], "two cats")
    assert cam.options["layer"] == 1 and cam.maps.shape == (4, 6, 6) and cam.grid == (6, 6)


def test_gradcam_maps_non_negative_and_mean(tiny_model, small_images, no_hooks_added):
    cam = tiny_model.gradcam(small_images[0], TEXT, layer=0)
    assert cam.maps.shape == (7, *tiny_model.grid)
    assert (cam.maps >= 0).all() and cam.maps[1:-1].max() > 0
    np.testing.assert_allclose(cam.match_map, cam.maps[1:-1].mean(axis=0), rtol=1e-6)
    assert cam.tokens == ["[ENC]", "a", "dog", "on", "a", "bench", "[SEP]"]
    expected = tiny_model.itm_scores(small_images[0], TEXT).values[0, 0]
    assert_close(cam.itm_probability, expected, depth=net_depth(tiny_model), magnitude=1.0)
    tiny_model.cross_attention(small_images[0], TEXT)


def test_gradcam_last_layer_only_first_token_reaches_the_head(tiny_model, small_images):
    # at the last layer only the [ENC] position feeds the ITM head: a check on position and layer
    cam = tiny_model.gradcam(small_images[0], TEXT, layer=-1)
    assert cam.options["layer"] == 1
    assert cam.maps[0].max() > 0
    np.testing.assert_array_equal(cam.maps[1:], 0.0)


def test_gradcam_default_layer_errors_and_grad_state(tiny_model, small_images, no_hooks_added):
    assert default_layer(12) == 6 and default_layer(2) == 0 and default_layer(1) == 0
    assert default_layer(24) == 12 and default_layer(3) == 1
    with pytest.raises(blipviz.InputError, match="positive int"):
        default_layer(0)
    with pytest.raises(ValueError, match=r"has 2 layers \(valid: 0 to 1"):
        tiny_model.gradcam(small_images[0], TEXT, layer=6)
    features = tiny_model.encode_images([small_images[0]])  # raw states made under inference_mode
    with torch.inference_mode():
        cam = tiny_model.gradcam(features, TEXT)
    assert cam.options["layer"] == 0
    assert_close(cam.maps, tiny_model.gradcam(small_images[0], TEXT).maps, depth=net_depth(tiny_model))
    assert torch.is_grad_enabled()  # the caller's grad mode is restored


def test_gradcam_overlay_and_plot(tiny_model, small_images):
    cam = tiny_model.gradcam(small_images[2], "a gradient")
    disp = cam.overlay()
    assert [ax.get_title() for ax in disp.axes_] == ["match decision", *cam.tokens]
    assert all(a.shape == (40, 40, 3) for a in disp.arrays_)
    assert len(cam.overlay(include_match=False, tokens=[1]).arrays_) == 1
    np.testing.assert_array_equal(cam.plot().images_[0].get_array(), cam.match_map)


def test_pixel_input_needs_an_image_to_overlay(tiny_model):
    pixels = torch.zeros(1, 3, 64, 64)
    ca = tiny_model.cross_attention(pixels, "a cat")
    assert ca.image is None
    with pytest.raises(ValueError, match="no image to draw on"):
        ca.overlay(layer=0)
    assert ca.overlay(np.zeros((10, 10, 3), dtype=np.uint8), 0).arrays_[0].shape == (10, 10, 3)
    with pytest.raises(ValueError, match="one image"):
        tiny_model.cross_attention(torch.zeros(2, 3, 64, 64), "a cat")


def test_maps_default_to_the_one_default_layer(tiny, images):
    from blipviz.analysis.attention import default_layer

    att = tiny.cross_attention(images[0], "a dog running on the beach")
    np.testing.assert_array_equal(att.maps(), att.maps(default_layer(att.n_layers)))
