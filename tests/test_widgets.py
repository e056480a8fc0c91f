"""The explorers, driven from Python: set widget values, click buttons, count model calls."""

from __future__ import annotations

import datetime
import io
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from PIL import Image

import blipviz
from blipviz.analysis import attention as attention_module
from blipviz.analysis import explanations as explanations_module
from blipviz.display.overlay import blend, robust_max
from blipviz.explore.widgets import AttentionExplorer, MatrixExplorer, RankingExplorer
from blipviz.testing import assert_close, net_depth, synthetic_images

ipywidgets = pytest.importorskip("ipywidgets")

TEXTS = ["a dog running on the beach", "two cats sleeping on a red sofa", "a bowl of fresh fruit"]


@pytest.fixture
def calls(tiny, monkeypatch):
    """Counts of model passes: vision encoder, text encoder (texts encoded), multimodal encoder,
    cross-attention and GradCAM runs."""
    counts: Counter = Counter()
    vision, texts, itm = tiny.vision_states, tiny.encode_texts, tiny.itm_forward

    def counted_vision(pixels):
        counts["vision"] += int(pixels.shape[0])
        return vision(pixels)

    def counted_texts(batch, **kw):
        counts["texts"] += len([batch] if isinstance(batch, str) else batch)
        return texts(batch, **kw)

    def counted_itm(input_ids, *args, **kw):
        counts["itm_passes"] += 1
        counts["itm_texts"] += int(input_ids.shape[0])
        return itm(input_ids, *args, **kw)

    monkeypatch.setattr(tiny, "vision_states", counted_vision)
    monkeypatch.setattr(tiny, "encode_texts", counted_texts)
    monkeypatch.setattr(tiny, "itm_forward", counted_itm)
    for module, name in ((attention_module, "cross_attention"), (explanations_module, "gradcam")):
        original = getattr(module, name)

        def counted(*args, _original=original, _name=name, **kw):
            counts[_name] += 1
            return _original(*args, **kw)

        monkeypatch.setattr(module, name, counted)
    return counts


@pytest.fixture
def gallery():
    return synthetic_images(3)


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _upload(name: str, content: bytes) -> dict:
    return {
        "name": name,
        "type": "image/png",
        "size": len(content),
        "content": memoryview(content),
        "last_modified": datetime.datetime.now(datetime.timezone.utc),
    }


# ------------------------------------------------------------------------------------ general
def test_widgets_module_is_light():
    heavy = "('ipywidgets', 'matplotlib')"
    code = f"import sys, blipviz.explore.widgets; print([m for m in {heavy} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_top_level_names_are_the_widget_classes():
    assert blipviz.RankingExplorer is RankingExplorer
    assert blipviz.MatrixExplorer is MatrixExplorer
    assert blipviz.AttentionExplorer is AttentionExplorer
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        blipviz.Nope  # noqa: B018


def test_building_does_not_display(tiny, gallery, monkeypatch):
    import IPython.display

    def refuse(*args, **kwargs):
        raise AssertionError("displayed while building")

    monkeypatch.setattr(IPython.display, "display", refuse)
    explorers = [
        RankingExplorer(tiny, gallery, TEXTS),
        MatrixExplorer(tiny, gallery, TEXTS),
        AttentionExplorer(tiny, gallery[0], TEXTS[0]),
    ]
    for explorer in explorers:
        assert isinstance(explorer.widget, ipywidgets.VBox)
        bundle = explorer._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert explorer.message.value == ""


# ------------------------------------------------------------------------------------ ranking
def test_ranking_matches_model_rank_and_encodes_each_image_once(tiny, gallery, calls):
    explorer = RankingExplorer(tiny, gallery, TEXTS)
    assert calls["vision"] == 3
    expected = tiny.rank(gallery[0], TEXTS)
    assert list(explorer.table_["text"]) == list(expected["text"])
    assert_close(explorer.table_["itm"], expected["itm"], depth=net_depth(tiny), magnitude=1.0)
    assert_close(explorer.table_["cosine"], expected["cosine"], depth=net_depth(tiny), magnitude=1.0)
    assert explorer.image_buttons[0].button_style == "primary"

    calls.clear()
    explorer.image_buttons[2].click()
    assert explorer.image_index == 2 and explorer.image_buttons[2].button_style == "primary"
    expected = tiny.rank(gallery[2], TEXTS)
    np.testing.assert_allclose(
        explorer.table_.sort_values("text")["itm"], expected.sort_values("text")["itm"]
    )
    explorer.image_buttons[0].click()  # seen before: nothing is computed
    explorer.method.value = "cosine"
    explorer.method.value = "ITM"
    assert calls["vision"] == 1  # only the rank() call above
    assert calls["itm_texts"] == 3 + 3  # rank(gallery[2]) and the first visit of image 2


def test_ranking_method_toggle_sorts_and_shows_columns(tiny, gallery):
    explorer = RankingExplorer(tiny, gallery, TEXTS, method="ITM")
    assert "<th" in explorer.table.value and ">ITM</th>" in explorer.table.value
    assert ">cosine</th>" not in explorer.table.value
    assert explorer.table_["itm"].is_monotonic_decreasing
    explorer.method.value = "cosine"
    assert ">ITM</th>" not in explorer.table.value and ">cosine</th>" in explorer.table.value
    assert explorer.table_["cosine"].is_monotonic_decreasing
    explorer.method.value = "both"
    assert ">ITM</th>" in explorer.table.value and ">cosine</th>" in explorer.table.value
    assert explorer.table.value.count("linear-gradient") == 2 * len(TEXTS)  # one bar per score cell


def test_editing_one_description_scores_only_that_description(tiny, gallery, calls):
    explorer = RankingExplorer(tiny, gallery, TEXTS)
    before = explorer.table.value
    calls.clear()
    explorer.description_boxes[1].value = "a red bicycle against a wall"
    assert calls["vision"] == 0
    assert calls["texts"] == 1 and calls["itm_texts"] == 1
    assert "a red bicycle against a wall" in explorer.table.value and explorer.table.value != before
    assert "two cats" not in explorer.table.value
    explorer.description_boxes[1].value = TEXTS[1]  # scored before: nothing runs
    assert calls["texts"] == 1 and calls["itm_texts"] == 1


def test_add_and_remove_descriptions(tiny, gallery, calls):
    explorer = RankingExplorer(tiny, gallery, TEXTS)
    calls.clear()
    explorer.new_description.value = "a man riding a horse"
    explorer.add_button.click()
    assert explorer.texts == [*TEXTS, "a man riding a horse"]
    assert len(explorer.table_) == 4 and explorer.new_description.value == ""
    assert calls["itm_texts"] == 1 and calls["vision"] == 0
    remove = explorer.rows.children[0].children[1]
    remove.click()
    assert explorer.texts == [*TEXTS[1:], "a man riding a horse"]
    assert TEXTS[0] not in set(explorer.table_["text"])
    assert calls["itm_texts"] == 1


def test_ranking_errors_show_in_the_widget(tiny, gallery):
    explorer = RankingExplorer(tiny, gallery, TEXTS[:1])
    table = explorer.table_.copy()
    explorer.add_button.click()  # the new-description box is empty
    assert "empty" in explorer.message.value and "InputError" in explorer.message.value
    explorer.description_boxes[0].value = "   "
    assert "description 0 is empty" in explorer.message.value
    assert explorer.table_.equals(table)
    explorer.description_boxes[0].value = "a cat"
    assert explorer.message.value == ""
    explorer.rows.children[0].children[1].click()  # the last description
    assert "at least one description" in explorer.message.value
    assert explorer.texts == ["a cat"]


def test_ranking_rejects_bad_arguments(tiny, gallery):
    with pytest.raises(blipviz.InputError, match="method"):
        RankingExplorer(tiny, gallery, TEXTS, method="bm25")
    with pytest.raises(blipviz.InputError, match="description 1 is empty"):
        RankingExplorer(tiny, gallery, ["a dog", ""])
    with pytest.raises(blipviz.InputError, match="at least one image"):
        RankingExplorer(tiny, [], TEXTS)


# ------------------------------------------------------------------------------------- matrix
def test_matrix_shows_the_itm_scores(tiny, gallery):
    explorer = MatrixExplorer(tiny, gallery, TEXTS)
    expected = tiny.itm_scores(gallery, TEXTS)
    assert_close(explorer.scores_.values, expected.values, depth=net_depth(tiny), magnitude=1.0)
    assert bytes(explorer.heatmap.value).startswith(b"\x89PNG")
    np.testing.assert_allclose(explorer.display_.im_.get_array(), expected.values.T, atol=1e-6)
    assert len(explorer.display_.thumbnails_) == 3
    assert explorer.descriptions.value.splitlines() == TEXTS


def test_matrix_upload_adds_a_column_and_encodes_only_it(tiny, gallery, calls):
    explorer = MatrixExplorer(tiny, gallery, TEXTS)
    before = bytes(explorer.heatmap.value)
    calls.clear()
    new = synthetic_images(1, seed=7)[0]
    explorer.upload.value = (_upload("new.png", _png_bytes(new)),)
    assert explorer.message.value == "" and explorer.upload.value == ()  # cleared for the next upload
    assert explorer.scores_.shape == (4, 3) and explorer.scores_.image_labels[-1] == "new.png"
    assert calls["vision"] == 1 and calls["itm_texts"] == len(TEXTS) and calls["texts"] == 0
    expected = tiny.itm_scores(new, TEXTS).values[0]
    assert_close(explorer.scores_.values[-1], expected, depth=net_depth(tiny), magnitude=1.0)
    assert bytes(explorer.heatmap.value) != before


def test_matrix_unreadable_upload_is_a_message(tiny, gallery, calls):
    explorer = MatrixExplorer(tiny, gallery, TEXTS)
    heatmap = bytes(explorer.heatmap.value)
    calls.clear()
    explorer.upload.value = (_upload("notes.png", b"this is not a picture"),)
    assert "notes.png" in explorer.message.value and "ImageLoadError" in explorer.message.value
    assert explorer.scores_.shape == (3, 3) and bytes(explorer.heatmap.value) == heatmap
    assert calls["vision"] == 0


def test_matrix_text_area_scores_only_new_lines(tiny, gallery, calls):
    explorer = MatrixExplorer(tiny, gallery, TEXTS)
    calls.clear()
    explorer.descriptions.value = "\n".join([*TEXTS, "", "a man riding a bicycle"])
    assert explorer.texts == [*TEXTS, "a man riding a bicycle"]
    assert explorer.scores_.shape == (3, 4)
    assert calls["vision"] == 0 and calls["texts"] == 1 and calls["itm_texts"] == 3  # one per image
    explorer.descriptions.value = "\n".join(TEXTS[:2])
    assert explorer.scores_.shape == (3, 2) and calls["itm_texts"] == 3
    explorer.descriptions.value = "  \n"
    assert "no descriptions" in explorer.message.value and explorer.scores_.shape == (3, 2)


def test_matrix_can_start_empty_and_grow(tiny, gallery):
    explorer = MatrixExplorer(tiny, [], TEXTS)
    assert "no images yet" in explorer.message.value
    explorer.add_images(gallery[:2])
    assert explorer.message.value == "" and explorer.scores_.shape == (2, 3)


# ---------------------------------------------------------------------------------- attention
def test_attention_controls_only_reslice_cached_maps(tiny, gallery, calls):
    explorer = AttentionExplorer(tiny, gallery[0], TEXTS[0])
    assert calls["vision"] == 1 and calls["cross_attention"] == 1 and calls["gradcam"] == 0
    calls.clear()
    seen = {bytes(explorer.overlay.value)}
    for change in (
        lambda: setattr(explorer.layer, "value", 1 - explorer.layer.value),  # the other layer
        lambda: setattr(explorer.head, "value", 2),
        lambda: setattr(explorer.token, "value", 2),
        lambda: setattr(explorer.opacity, "value", 0.25),
    ):
        change()
        assert explorer.message.value == ""
        assert bytes(explorer.overlay.value) not in seen  # the overlay changed
        seen.add(bytes(explorer.overlay.value))
    assert sum(calls.values()) == 0  # no model pass at all


def test_attention_overlay_is_the_blend_of_the_chosen_map(tiny, gallery):
    explorer = AttentionExplorer(tiny, gallery[1], TEXTS[1])
    explorer.layer.value = 0
    explorer.head.value = 3
    explorer.token.value = 1
    explorer.opacity.value = 0.4
    reference = tiny.cross_attention(gallery[1], TEXTS[1])
    expected_map = reference.maps(0, heads=3)[1]
    assert_close(explorer.map_, expected_map, depth=net_depth(tiny))
    picture = Image.fromarray(gallery[1]).resize((320, 240))  # enlarged to 320 px on the long side
    expected = blend(picture, expected_map, robust_max(expected_map), alpha=0.4)
    np.testing.assert_array_equal(explorer.overlay_, expected)
    decoded = np.asarray(Image.open(io.BytesIO(bytes(explorer.overlay.value))))
    np.testing.assert_array_equal(decoded, explorer.overlay_)
    assert "layer 0" in explorer.caption.value and "head 3" in explorer.caption.value
    explorer.token.value = "mean"
    words = reference.maps(0, heads=3)[1:-1].mean(axis=0)
    assert_close(explorer.map_, words, depth=net_depth(tiny))


def test_gradcam_is_computed_once_per_layer(tiny, gallery, calls):
    explorer = AttentionExplorer(tiny, gallery[0], TEXTS[0])
    calls.clear()
    explorer.method.value = "GradCAM"
    assert explorer.head.disabled
    assert calls["gradcam"] == 1
    reference = tiny.gradcam(gallery[0], TEXTS[0], explorer.layer.value)
    assert_close(explorer.map_, reference.match_map, depth=net_depth(tiny))
    other = 1 - explorer.layer.value
    explorer.layer.value = other
    explorer.token.value = 3
    explorer.layer.value = 1 - other
    explorer.method.value = "attention"
    explorer.method.value = "GradCAM"
    explorer.layer.value = other
    assert calls["gradcam"] == 3  # two layers in the explorer, one reference above
    assert calls["vision"] == 1  # the reference only
    assert_close(explorer.map_, tiny.gradcam(gallery[0], TEXTS[0], other).maps[3], depth=net_depth(tiny))


def test_attention_text_edit_computes_each_text_once(tiny, gallery, calls):
    explorer = AttentionExplorer(tiny, gallery[0], TEXTS[0])
    calls.clear()
    explorer.token.value = 3
    explorer.text.value = "two cats"
    assert [label for label, _ in explorer.token.options] == [
        "mean of the words",
        "0: [ENC]",
        "1: two",
        "2: cats",
        "3: [SEP]",
    ]
    assert explorer.token.value == "mean"
    explorer.text.value = TEXTS[0]
    assert calls["cross_attention"] == 1 and calls["vision"] == 0
    explorer.text.value = ""
    assert "empty" in explorer.message.value
    assert TEXTS[0] in explorer.caption.value  # the last good text stays on show


def test_attention_rejects_bad_arguments(tiny, gallery):
    with pytest.raises(blipviz.InputError, match="one image"):
        AttentionExplorer(tiny, gallery[:2], "a dog")
    with pytest.raises(blipviz.InputError, match="method"):
        AttentionExplorer(tiny, gallery[0], "a dog", method="saliency")
    with pytest.raises(blipviz.InputError, match="empty"):
        AttentionExplorer(tiny, gallery[0], " ")


def test_attention_starts_in_gradcam_at_its_default_layer(tiny, gallery):
    explorer = AttentionExplorer(tiny, gallery[0], TEXTS[0], method="GradCAM", alpha=0.3)
    assert explorer.layer.value == attention_module.default_layer(2)
    assert explorer.opacity.value == pytest.approx(0.3) and explorer.head.disabled
    assert "GradCAM" in explorer.caption.value


# --------------------------------------------------------------------------------- input rules
LONG = " ".join(f"word{i}" for i in range(60))  # cut to 35 tokens


def test_a_bare_string_is_one_description(tiny, gallery):
    ranking = RankingExplorer(tiny, gallery, "a dog")
    assert ranking.texts == ["a dog"] and list(ranking.table_["text"]) == ["a dog"]
    matrix = MatrixExplorer(tiny, gallery, "a dog")
    assert matrix.texts == ["a dog"] and matrix.scores_.shape == (3, 1)
    assert matrix.descriptions.value == "a dog"
    with pytest.raises(blipviz.InputTypeError, match=r"texts\[1\]"):
        RankingExplorer(tiny, gallery, ["a dog", 3])
    with pytest.raises(blipviz.InputTypeError, match=r"texts\[0\]"):
        MatrixExplorer(tiny, gallery, [None])


def test_explorers_flag_cut_descriptions_and_warn_once(tiny, gallery):
    with pytest.warns(blipviz.TruncationWarning, match="1 of 2 texts was cut to 35 tokens") as record:
        ranking = RankingExplorer(tiny, gallery, [TEXTS[0], LONG])
    assert len([w for w in record if w.category is blipviz.TruncationWarning]) == 1
    assert dict(zip(ranking.table_["text"], ranking.table_.truncated, strict=True)) == {
        TEXTS[0]: False,
        LONG: True,
    }
    assert "cut to 35 tokens" in ranking.table.value
    with pytest.warns(blipviz.TruncationWarning) as record:
        matrix = MatrixExplorer(tiny, gallery, [LONG, TEXTS[1]])
    assert len([w for w in record if w.category is blipviz.TruncationWarning]) == 1
    assert matrix.scores_.truncated == [True, False]
    with pytest.warns(blipviz.TruncationWarning) as record:
        attention = AttentionExplorer(tiny, gallery[0], LONG, method="GradCAM")
    assert len([w for w in record if w.category is blipviz.TruncationWarning]) == 1
    assert "cut to 35 tokens" in attention.caption.value
