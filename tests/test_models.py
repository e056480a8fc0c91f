from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest
import torch

import blipviz
from blipviz.errors import InputError, ModelLoadError, OfflineError
from blipviz.net import registry as models
from blipviz.testing import assert_close, net_depth, synthetic_images, tiny_random_config


def test_list_models_is_the_whole_family():
    table = blipviz.list_models()
    assert len(table) == 12
    assert set(table["part"]) == {"ImageEncoder", "TextEncoder", "MultimodalEncoder"}
    assert set(table["architecture"]) == {"ViT-B/16", "ViT-L/16"}
    assert set(table["dataset"]) == {"COCO", "Flickr30k"}
    assert set(table["checkpoint"]) == {
        "Salesforce/blip-itm-base-coco",
        "Salesforce/blip-itm-large-coco",
        "Salesforce/blip-itm-base-flickr",
        "Salesforce/blip-itm-large-flickr",
    }
    default = table[table["default"]]
    assert len(default) == 1
    assert default.iloc[0][["part", "architecture", "dataset"]].tolist() == [
        "MultimodalEncoder",
        "ViT-B/16",
        "COCO",
    ]
    b = table[(table.architecture == "ViT-B/16") & (table.dataset == "COCO")].set_index("part")["parameters"]
    large = table[(table.architecture == "ViT-L/16") & (table.dataset == "COCO")].set_index("part")[
        "parameters"
    ]
    assert large["ImageEncoder"] > 3 * b["ImageEncoder"]
    assert large["TextEncoder"] == b["TextEncoder"]


def test_part_parameter_counts_match_the_built_net(full_b):
    counts = blipviz.list_models().query("architecture == 'ViT-B/16' and dataset == 'COCO'").set_index("part")
    assert full_b.image_encoder.parameter_count == counts.loc["ImageEncoder", "parameters"]
    assert full_b.text_encoder.parameter_count == counts.loc["TextEncoder", "parameters"]
    assert full_b.multimodal_encoder.parameter_count == counts.loc["MultimodalEncoder", "parameters"]
    vit = sum(p.numel() for p in full_b.hf.vision_model.parameters())
    proj = sum(p.numel() for p in full_b.hf.vision_proj.parameters())
    assert full_b.image_encoder.parameter_count == vit + proj


def test_parameters_information():
    info = blipviz.parameters_information()
    assert info.loc["architecture", "default"] == "ViT-B/16"
    assert info.loc["dataset", "values"] == ["COCO", "Flickr30k"]
    assert info.loc["part", "values"] == ["ImageEncoder", "TextEncoder", "MultimodalEncoder"]


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (dict(architecture="ViT-H/14"), r"architecture 'ViT-H/14'.*'ViT-B/16', 'ViT-L/16'"),
        (dict(dataset="ImageNet"), r"dataset 'ImageNet'.*'COCO', 'Flickr30k'"),
        (dict(first_token="sep"), r"first_token 'sep'"),
    ],
)
def test_unknown_values_list_the_allowed_ones(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        blipviz.load_model(pretrained=False, **kwargs)


def test_unknown_part_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="'ImageEncoder', 'TextEncoder', 'MultimodalEncoder'"):
        blipviz.load_part("VisionEncoder", "tiny-random")


def _weights_in_memory(part) -> int:
    return sum(p.numel() for p in part.model.hf.parameters() if not p.is_meta)


@pytest.mark.parametrize(
    ("name", "cls"),
    [("ImageEncoder", blipviz.ImageEncoder), ("TextEncoder", blipviz.TextEncoder),
     ("MultimodalEncoder", blipviz.MultimodalEncoder)],
)  # fmt: skip
def test_load_part_keeps_only_that_parts_weights(tiny, texts, name, cls):
    """load_part frees the weights its part does not use, and computes what the whole net does."""
    part = blipviz.load_part(name, "tiny-random")
    assert isinstance(part, cls) and part.model.parts == {name}
    whole = {"ImageEncoder": tiny.image_encoder, "TextEncoder": tiny.text_encoder,
             "MultimodalEncoder": tiny.multimodal_encoder}[name]  # fmt: skip
    assert _weights_in_memory(part) == part.parameter_count == whole.parameter_count
    assert _weights_in_memory(part) < _weights_in_memory(tiny.image_encoder)
    images = synthetic_images(2)
    if name == "ImageEncoder":
        torch.testing.assert_close(part(images).raw, tiny.encode_images(images).raw, rtol=0, atol=0)
    elif name == "TextEncoder":
        expected = tiny.encode_texts(texts).embeddings
        torch.testing.assert_close(part(texts).embeddings, expected, rtol=0, atol=0)
    else:  # image features from another net's ImageEncoder
        feats = blipviz.load_part("ImageEncoder", "tiny-random")(images[:1])
        torch.testing.assert_close(part(texts, feats), tiny.multimodal_encoder(texts, feats), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "call", "needs"),
    [
        ("ImageEncoder", lambda m, t: m.encode_texts(t), "TextEncoder"),
        ("ImageEncoder", lambda m, t: m.itm_scores(synthetic_images(1), t), "MultimodalEncoder"),
        ("TextEncoder", lambda m, t: m.encode_images(synthetic_images(1)), "ImageEncoder"),
        ("MultimodalEncoder", lambda m, t: m.itm_scores(synthetic_images(1), t), "ImageEncoder"),
        ("MultimodalEncoder", lambda m, t: m.cosine_scores(synthetic_images(1), t), "ImageEncoder"),
    ],
)
def test_a_missing_part_is_a_named_error(texts, name, call, needs):
    model = blipviz.load_part(name, "tiny-random").model
    with pytest.raises(blipviz.MissingPartError, match=rf"needs the {needs}.*load_part\('{name}'\)"):
        call(model, texts)


def test_a_part_with_a_feature_cache_or_saved_is_a_named_error(texts, tmp_path):
    text_part = blipviz.load_part("TextEncoder", "tiny-random", cache_dir=tmp_path / "cache")
    with pytest.raises(blipviz.MissingPartError, match="caching image features needs the ImageEncoder"):
        text_part.model.encode_images(synthetic_images(1))
    with pytest.raises(blipviz.MissingPartError, match="holds only the TextEncoder"):
        text_part.model.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()


@pytest.mark.parametrize("architecture", ["ViT-B/16", pytest.param("ViT-L/16", marks=pytest.mark.slow)])
def test_uninitialized_nets_build_offline(architecture, full_b):
    # sockets are blocked for the whole suite (pytest-socket); this must not try the network at all
    model = (
        full_b
        if architecture == "ViT-B/16"
        else blipviz.load_model(architecture=architecture, pretrained=False)
    )
    width = {"ViT-B/16": 768, "ViT-L/16": 1024}[architecture]
    heads = {"ViT-B/16": 12, "ViT-L/16": 16}[architecture]
    cfg = model.config
    assert model.width == width and cfg.vision_config.num_attention_heads == heads
    assert cfg.text_config.num_attention_heads == 12 and cfg.vision_config.layer_norm_eps == 1e-6
    assert model.grid == (24, 24) and model.n_image_tokens == 577
    if architecture == "ViT-L/16":
        f = model.encode_images(synthetic_images(1))
        assert f.raw.shape == (1, 577, 1024) and f.embeddings.shape == (1, 256)


def test_random_weights_are_seeded():
    a = blipviz.load_model("tiny-random", seed=1)
    b = blipviz.load_model("tiny-random", seed=1)
    c = blipviz.load_model("tiny-random", seed=2)
    imgs = synthetic_images(2)
    sa, sb, sc = (np.asarray(m.itm_scores(imgs, ["a", "b c"])) for m in (a, b, c))
    np.testing.assert_array_equal(sa, sb)
    assert np.abs(sa - sc).max() > 1e-3


def test_save_and_load_folder_roundtrip(tiny, tmp_path, images, texts):
    folder = tiny.save_pretrained(tmp_path / "net")
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer_config.json"):
        assert (folder / name).is_file(), name
    loaded = blipviz.load_model(folder)
    np.testing.assert_array_equal(
        np.asarray(loaded.itm_scores(images, texts)), np.asarray(tiny.itm_scores(images, texts))
    )
    np.testing.assert_array_equal(
        np.asarray(loaded.cosine_scores(images, texts)), np.asarray(tiny.cosine_scores(images, texts))
    )
    assert loaded.preprocessing == tiny.preprocessing
    # it records where its weights came from: the folder, resolved (for a collection's manifest)
    assert loaded.load_options == {"name_or_path": str(folder.resolve())}
    random = blipviz.load_model(folder, pretrained=False, seed=7)
    assert random.load_options == {"name_or_path": str(folder.resolve()), "pretrained": False, "seed": 7}


def test_known_config_defects_are_corrected_with_a_note(tmp_path, caplog):
    from transformers import BlipConfig

    config = BlipConfig.from_dict(models.blip_config("ViT-B/16").to_dict())
    config.text_config.num_attention_heads = 8
    config.vision_config.layer_norm_eps = 1e-5
    with caplog.at_level(logging.INFO, logger="blipviz"):
        models.correct_config(config, "demo")
    assert config.text_config.num_attention_heads == 12
    assert config.vision_config.layer_norm_eps == 1e-6
    assert "num_attention_heads corrected from 8 to 12" in caplog.text
    assert "layer_norm_eps corrected" in caplog.text


def test_defective_config_on_disk_is_corrected_on_load(tiny, tmp_path, caplog):
    folder = tiny.save_pretrained(tmp_path / "net")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["vision_config"]["layer_norm_eps"] = 1e-5
    (folder / "config.json").write_text(json.dumps(cfg))
    with caplog.at_level(logging.INFO, logger="blipviz"):
        loaded = blipviz.load_model(folder)
    assert loaded.config.vision_config.layer_norm_eps == 1e-6
    assert "layer_norm_eps corrected" in caplog.text


def test_loading_errors_are_typed_and_say_what_to_do(tmp_path, tiny):
    with pytest.raises(ModelLoadError, match="no such folder"):
        blipviz.load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        blipviz.load_model(tmp_path / "empty")
    # a BLIP captioning checkpoint is not an ITM net
    from transformers import BlipForConditionalGeneration

    cap = BlipForConditionalGeneration(tiny_random_config())
    cap.config.architectures = ["BlipForConditionalGeneration"]
    cap.save_pretrained(tmp_path / "captioner")
    with pytest.raises(ModelLoadError, match="not an image-text matching net"):
        blipviz.load_model(tmp_path / "captioner")
    # corrupt weights
    folder = tiny.save_pretrained(tmp_path / "corrupt")
    (folder / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ModelLoadError, match="could not be loaded"):
        blipviz.load_model(folder)


def test_hub_id_offline_fails_fast_with_ways_forward(monkeypatch):
    from huggingface_hub import constants

    for offline_env in (True, False):  # HF_HUB_OFFLINE set, or the Hub unreachable (sockets blocked)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline_env)
        start = time.perf_counter()
        with pytest.raises(OfflineError) as info:
            blipviz.load_model("Salesforce/blip-itm-base-coco")
        assert time.perf_counter() - start < 10
        message = str(info.value)
        assert "'Salesforce/blip-itm-base-coco'" in message
        assert "tiny-random" in message and "folder" in message
        assert ("HF_HUB_OFFLINE" in message) == offline_env


def test_offline_error_is_an_oserror():
    assert issubclass(OfflineError, OSError) and issubclass(OfflineError, ModelLoadError)
    assert issubclass(InputError, ValueError)


def test_device_and_dtype_options(texts):
    m = blipviz.load_model("tiny-random", dtype=torch.float64)
    assert next(m.hf.parameters()).dtype == torch.float64
    s = np.asarray(m.itm_scores(synthetic_images(1), texts))
    ref = np.asarray(blipviz.load_model("tiny-random").itm_scores(synthetic_images(1), texts))
    assert_close(ref, s, dtype=torch.float32, depth=net_depth(m), magnitude=1.0)  # float32's error


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@CUDA
def test_cuda_matches_cpu(texts):
    cpu = blipviz.load_model("tiny-random")
    gpu = blipviz.load_model("tiny-random", device="cuda")
    imgs = synthetic_images(2)
    assert_close(
        gpu.itm_scores(imgs, texts), cpu.itm_scores(imgs, texts), depth=net_depth(cpu), magnitude=1.0
    )


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_agrees_with_float32(texts, dtype, device):
    """``dtype=`` runs the whole net in half precision (on CPU too, where torch supports it), and the
    scores stay within the precision of the type: each of the 2 + 2 layers rounds to eps
    (float16 2^-10, bfloat16 2^-7). Measured on CPU: 3.2 and 6.5 eps for probabilities, under 0.5 eps
    for cosines; bounds 10 eps and 2 eps."""
    cpu = blipviz.load_model("tiny-random")
    half = blipviz.load_model("tiny-random", device=device, dtype=dtype)
    assert next(half.hf.parameters()).dtype == dtype
    imgs = synthetic_images(3)
    a, b = np.asarray(cpu.itm_scores(imgs, texts)), np.asarray(half.itm_scores(imgs, texts))
    assert b.dtype == np.float64 and np.all((b >= 0) & (b <= 1))
    assert_close(b, a, dtype=dtype, depth=net_depth(cpu), magnitude=1.0, ulps=2.5)  # 10 eps
    assert np.abs(b - a).max() > 0  # really computed in half precision
    cos_a, cos_b = np.asarray(cpu.cosine_scores(imgs, texts)), np.asarray(half.cosine_scores(imgs, texts))
    assert_close(cos_b, cos_a, dtype=dtype, depth=net_depth(cpu), magnitude=1.0, ulps=0.5)  # 2 eps


# ------------------------------------------------------------------------------ loading bars


def _current_tqdm_hook():
    from transformers.utils import logging as hf_logging

    hook = hf_logging.set_tqdm_hook(None)
    hf_logging.set_tqdm_hook(hook)
    return hook


def test_loading_a_saved_net_draws_no_weight_loading_bar(tiny, tmp_path, capfd):
    """transformers 5 draws "Loading weights" over a checkpoint's arrays; load_model does not, and
    leaves every progress-bar switch as it found it."""
    import huggingface_hub.utils as hub_utils
    from transformers import BlipForImageTextRetrieval
    from transformers.utils import logging as hf_logging

    folder = tiny.save_pretrained(tmp_path / "tiny")
    assert "Writing model shards" not in "".join(capfd.readouterr())  # saving draws none either
    if hub_utils.are_progress_bars_disabled():
        pytest.skip("progress bars are disabled in this environment (HF_HUB_DISABLE_PROGRESS_BARS)")
    BlipForImageTextRetrieval.from_pretrained(folder)  # transformers alone: the bar this is about
    assert "Loading weights" in capfd.readouterr().err
    tiny.hf.save_pretrained(tmp_path / "again")  # transformers alone: its saving bar
    assert "Writing model shards" in capfd.readouterr().err
    switches = (hub_utils.are_progress_bars_disabled, hf_logging.is_progress_bar_enabled, _current_tqdm_hook)
    before = [switch() for switch in switches]
    loaded = blipviz.load_model(folder)
    out, err = capfd.readouterr()
    assert "Loading weights" not in out + err
    assert loaded.hf.config.vision_config.image_size == tiny.hf.config.vision_config.image_size
    assert [switch() for switch in switches] == before


def test_weight_loading_bars_are_silenced_and_other_bars_kept(capfd):
    """Only bars described "Loading weights" are silenced; other transformers bars still draw, a
    hook set before is chained and restored, also when the block raises."""
    from transformers.utils import logging as hf_logging

    from blipviz.net.loading import WEIGHT_LOADING_BAR, no_weight_loading_bars

    if not hf_logging.is_progress_bar_enabled():
        pytest.skip("progress bars are disabled in this environment")
    seen = []

    def outer(factory, args, kwargs):
        seen.append(kwargs.get("desc"))
        return factory(*args, **kwargs)

    previous = hf_logging.set_tqdm_hook(outer)
    try:
        with pytest.raises(RuntimeError), no_weight_loading_bars():
            list(hf_logging.tqdm(range(3), desc=WEIGHT_LOADING_BAR))
            list(hf_logging.tqdm(range(3), desc="Fetching files"))
            raise RuntimeError("the block fails")
        err = capfd.readouterr().err
        assert WEIGHT_LOADING_BAR not in err
        assert "Fetching files" in err and "3/3" in err
        assert seen == [WEIGHT_LOADING_BAR, "Fetching files"]  # the outer hook saw both
        assert _current_tqdm_hook() is outer  # restored despite the exception
    finally:
        hf_logging.set_tqdm_hook(previous)


def test_list_models_gives_one_total_per_net_beside_the_overlapping_part_counts():
    import torch
    from transformers import BlipForImageTextRetrieval

    from blipviz.net.registry import blip_config

    table = blipviz.list_models()
    for architecture, rows in table.groupby("architecture"):
        with torch.device("meta"):
            whole = BlipForImageTextRetrieval(blip_config(architecture))
        total = sum(p.numel() for p in whole.parameters())
        assert set(rows["net_parameters"]) == {total}
        # the parts share the text tower: their counts overlap, so their sum exceeds the total
        one_net = rows[rows["dataset"] == "COCO"]
        assert one_net["parameters"].sum() > total > one_net["parameters"].max()


def test_a_net_s_repr_shows_its_dtype_and_quantisation():
    net = blipviz.load_model("tiny-random", dtype="bfloat16")
    assert "dtype='bfloat16'" in repr(net) and "quantize" not in repr(net)
    assert "quantize='int8'" in repr(blipviz.load_model("tiny-random", quantize="int8"))
