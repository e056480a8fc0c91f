import re

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


# ------------------------------------------------------------------------------ displayed tables


def _cells(html: str) -> list[str]:
    """The text of every data cell and row heading of a rendered table."""
    import re

    return re.findall(r"<t[dh][^>]*>([^<]*)</t[dh]>", html)


def test_every_array_is_reachable_and_numbers_stay_numeric():
    info = blipviz.net_information("ViT-B/16")
    everything = info.arrays()
    assert len(everything) == 472 == len(info.arrays_element_counts)
    assert everything.equals(info.arrays_element_counts) and everything is not info.arrays_element_counts
    assert everything["elements"].dtype == "int64"
    assert info.to_pandas()["elements"].dtype == "int64"
    assert info.parts["elements"].dtype == "int64"
    # the styled table holds every row (in a scrolling box) and says so
    styler = info.style("arrays")
    # a float net: the all-False int8 flag is left out of the view, the numbers are the frame's own
    assert styler.data.equals(info.arrays_element_counts.drop(columns="quantized"))
    html = styler.to_html()
    cells = set(_cells(html))
    assert set(everything.index) <= cells
    assert "all 472 rows" in html and "overflow: auto" in html
    # or the first rows, with where to find the rest
    head = info.style("arrays", max_rows=10).to_html()
    assert "10 of 472 rows shown: use .arrays() for all" in head
    assert len(set(_cells(head)) & set(everything.index)) == 10


def test_styled_tables_have_thousands_separators():
    info = blipviz.net_information("ViT-B/16")
    arrays = info.arrays_element_counts
    cells = _cells(info.style("arrays").to_html())
    position = arrays.loc["vision_model.embeddings.position_embedding"]
    assert f"{position['elements']:,}" == "443,136" and "443,136" in cells
    assert "1 × 577 × 768" in cells  # the shape, in the same style
    parts = _cells(info.style("parts").to_html())
    for part, n in info.parts["elements"].items():
        assert part in parts and f"{n:,}" in parts
    summary = _cells(info.style("summary").to_html())
    assert f"{info.arrays_total_element_count:,}" in summary
    assert "223,744,258" in _cells(info._repr_html_())  # Jupyter's view of the object itself
    layers = _cells(info.style("layers").to_html())
    assert str(info.layer_type_counts["Linear"]) in layers


def test_style_counts_formats_only_for_display():
    from blipviz.display.net_tables import format_count, format_shape, style_counts

    frame = pd.DataFrame(
        {"elements": [1234567, 12], "share": [0.5, 2.0], "quantized": [True, False]},
        index=pd.Index(["a", "b"], name="name"),
    )
    cells = _cells(style_counts(frame).to_html())
    assert {"1,234,567", "12", "0.5", "2", "True", "False"} <= set(cells)
    assert frame["elements"].tolist() == [1234567, 12]  # unchanged
    assert _cells(style_counts(frame["elements"]).to_html()).count("1,234,567") == 1
    assert format_count(10**6) == "1,000,000" and format_count(True) == "True" and format_count("x") == "x"
    assert format_shape((3072, 768)) == "3,072 × 768" and format_shape(()) == "scalar"
    wide = pd.DataFrame([[1, 2000]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")]))
    assert "2,000" in _cells(style_counts(wide.rename_axis("row")).to_html())  # two header levels
    with pytest.raises(ValueError, match="max_rows"):
        style_counts(frame, max_rows=0)
    with pytest.raises(ValueError, match="DataFrame or a Series"):
        style_counts([1, 2])
    with pytest.raises(ValueError, match="unknown table"):
        blipviz.net_information("ViT-B/16").style("weights")
    with pytest.raises(ValueError, match="no table of parts"):
        blipviz.net_information(torch.nn.Linear(2, 2)).style("parts")


def test_captions_name_what_is_described_and_headers_read_as_words(tiny_model):
    info = blipviz.net_information("ViT-B/16")
    html = info.style("parts").to_html()
    assert "<caption>ViT-B/16 (no weights): parts" in html and "no int8 weights" in html
    headers = re.findall(r"<th class=\"(?:col_heading|index_name)[^\"]*\" >([^<]*)</th>", html)
    assert headers == ["part", "weight arrays", "elements", "leaf modules"]  # one header row
    assert "quantized_elements" not in html and "BlipForImageTextRetrieval" not in html
    assert list(info.parts.columns) == ["arrays", "elements", "quantized_elements", "layers"]  # the data
    assert info.part("ImageEncoder").subject == "ImageEncoder of ViT-B/16 (no weights)"
    assert "ViT-B/16 (no weights)" in _cells(info.style("summary").to_html())  # the row is the subject
    # a loaded net and one of its parts are named by the net's name
    assert blipviz.net_information(tiny_model).subject == tiny_model.name
    part = blipviz.net_information(tiny_model.image_encoder)
    assert part.style("summary").caption.startswith(f"ImageEncoder of {tiny_model.name}: in all")
    # an int8 net keeps its int8 column, under a readable header
    int8 = blipviz.load_model("tiny-random", quantize="int8")
    html = blipviz.net_information(int8).style("parts").to_html()
    assert "int8 elements" in html and "no int8 weights" not in html
