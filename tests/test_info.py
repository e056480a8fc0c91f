import pandas as pd
import pytest
import torch

import blipviz
from blipviz.net.registry import blip_config


def _meta_net(architecture):
    from transformers import BlipForImageTextRetrieval

    with torch.device("meta"):
        return BlipForImageTextRetrieval(blip_config(architecture))


def test_vit_b16_total_is_the_transformers_parameter_count():
    info = blipviz.net_information("ViT-B/16")
    expected = sum(p.numel() for p in _meta_net("ViT-B/16").parameters())
    assert info.arrays_total_element_count == expected
    assert info.arrays_element_counts["elements"].sum() == expected
    assert info.name == "BlipForImageTextRetrieval"
    counts = blipviz.list_models().query("architecture == 'ViT-B/16' and dataset == 'COCO'")
    for part, n in zip(counts["part"], counts["parameters"], strict=True):
        assert info.parts.loc[part, "elements"] == n == info.part(part).arrays_total_element_count


def test_layer_types_follow_the_geometry():
    info = blipviz.net_information("ViT-L/16")
    cfg = blip_config("ViT-L/16")
    v, t = cfg.vision_config, cfg.text_config
    qkv = info.arrays_element_counts.loc["vision_model.encoder.layers.0.self_attn.qkv.weight", "shape"]
    assert qkv == (3 * v.hidden_size, v.hidden_size) == (3072, 1024)
    linear = info.layer_type_counts["Linear"]
    # vision: qkv, proj, fc1, fc2 per layer + vision_proj
    # text: 6 self + 4 cross per layer + text_proj + itm_head
    assert linear == 4 * v.num_hidden_layers + 1 + 10 * t.num_hidden_layers + 2
    assert info.layer_type_counts["Conv2d"] == 1
    text = info.part("TextEncoder").layer_type_counts
    assert "Conv2d" not in text.index
    assert text["Linear"] == 6 * t.num_hidden_layers + 1
    assert info.part("MultimodalEncoder").layer_type_counts["Linear"] == 10 * t.num_hidden_layers + 1


def test_loaded_net_and_parts(tiny_model):
    info = blipviz.net_information(tiny_model)
    assert info.arrays_total_element_count == sum(p.numel() for p in tiny_model.hf.parameters())
    for part in (tiny_model.image_encoder, tiny_model.text_encoder, tiny_model.multimodal_encoder):
        part_info = blipviz.net_information(part)
        assert part_info.name == part.part
        assert part_info.parts is None
        assert part_info.arrays_total_element_count == part.parameter_count
        assert list(part_info.arrays_element_counts.index) == part.parameter_names()
        assert isinstance(part_info.layer_type_counts, pd.Series)
    assert set(info.parts.index) == {"ImageEncoder", "TextEncoder", "MultimodalEncoder"}
    summary = info.to_pandas()
    assert summary.loc["BlipForImageTextRetrieval", "elements"] == info.arrays_total_element_count


def test_any_module_and_errors():
    info = blipviz.net_information(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU()))
    assert info.arrays_total_element_count == 16
    assert info.layer_type_counts.to_dict() == {"Linear": 1, "ReLU": 1}
    with pytest.raises(TypeError, match="net_information takes"):
        blipviz.net_information(42)
    with pytest.raises(ValueError, match="architecture"):
        blipviz.net_information("ViT-H/14")
    with pytest.raises(ValueError, match="no part"):
        blipviz.net_information("ViT-B/16").part("Decoder")
