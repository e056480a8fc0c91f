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


def test_with_a_feature_cache_a_second_run_skips_the_vit_and_the_itm_pass(tiny, tmp_path, vit_images):
    from blipviz.store.cache import feature_cache

    a, b = synthetic_images(2)
    images, texts = [a, b, a], CAPTIONS[:3]
    plain = tiny.pair_scores(images, texts)
    with feature_cache(tiny, tmp_path) as cache:
        first = tiny.pair_scores(images, texts)
        assert sum(vit_images) == 2 + 2  # the plain run's two images, then two misses
        second = tiny.pair_scores(images, texts)
        assert sum(vit_images) == 4  # all from the store
        assert cache.stats.itm_hits == 3
    assert np.array_equal(second.itm, first.itm)
    assert_close(first.itm, plain.itm, depth=net_depth(tiny), magnitude=1.0)
    assert_close(second.cosine, plain.cosine, depth=net_depth(tiny), magnitude=1.0)


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


# ----------------------------------------------------------------------------------- figures
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from blipviz.display.labels import palette, palette_size  # noqa: E402
from blipviz.display.pairs import PairDistributionDisplay, caption_lines  # noqa: E402
from blipviz.testing.figures import assert_inside_figure, assert_no_overlap, visible_texts  # noqa: E402

# Few examples, no shrinking: every example draws a figure, and CI has two cores
FIGURES = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
# Latin with TeX's special characters, Greek, Cyrillic, Hebrew, CJK (drawn as boxes where the font
# lacks it, but measured all the same), digits and spaces
_ALPHABET = list("abcdefghijklmnopqrstuvwxyz ABC $$$___^^{}\\%#&~") + list("αβγδεζ жзийкл שלום 猫狗红 0123")
CAPTION_TEXT = st.text(alphabet=st.sampled_from(_ALPHABET), min_size=1, max_size=150)
MISSING_GLYPHS = pytest.mark.filterwarnings("ignore:Glyph .* missing from font")


def _literal(text_artist, expected: str) -> None:
    assert text_artist.get_text() == expected
    assert text_artist.get_parse_math() is False


def _rejoins(shown: str, caption: str) -> bool:
    """Whether ``caption`` is ``shown``'s lines joined, each break standing for a space or for
    nothing (a break between two Chinese characters)."""
    lines = shown.split("\n")
    position = 0
    for k, line in enumerate(lines):
        if not caption.startswith(line, position):
            return False
        position += len(line)
        if k < len(lines) - 1 and caption.startswith(" ", position):
            position += 1
    return position == len(caption)


def test_caption_lines_break_chinese_between_characters_and_never_a_latin_word():
    assert caption_lines("a dog running on the beach") == "a dog running on the beach"
    chinese = "猫" * 60  # 60 characters, 120 Latin widths
    lines = caption_lines(chinese).split("\n")
    assert "".join(lines) == chinese and max(len(line) for line in lines) <= 22
    word = "word" * 15  # one 60-character word: whole on its line
    assert caption_lines(f"{word} and more") == f"{word}\nand more"
    mixed = " ".join(("一只狗 在海滩上奔跑 " * 4).split())
    assert _rejoins(caption_lines(mixed), mixed)


def _check_layout(fig, extra=()) -> None:
    texts = visible_texts(fig)
    assert_no_overlap(texts, what="texts")
    assert_inside_figure([*texts, *extra])


@MISSING_GLYPHS
@pytest.mark.parametrize("font_size", [8, 14])
@FIGURES
@given(captions=st.lists(CAPTION_TEXT, min_size=1, max_size=12), data=st.data())
def test_worst_pairs_slide_geometry(font_size, captions, data):
    import matplotlib.pyplot as plt

    n = len(captions)
    itm = data.draw(st.lists(st.floats(0.001, 0.999), min_size=n, max_size=n))
    cosine = data.draw(st.lists(st.floats(-1.0, 1.0), min_size=n, max_size=n))
    cut = data.draw(st.lists(st.sampled_from([None, "tokens", "words"]), min_size=n, max_size=n))
    pairs = _pairs(itm, cosine=cosine, texts=captions, truncated_by=cut)
    shown = data.draw(st.integers(1, n))
    with plt.rc_context({"font.size": font_size}):
        display = pairs.plot_worst(shown)
        fig = display.figure_
        _check_layout(fig, [*display.images_, *display.bars_["itm"], *display.bars_["cosine"]])
        order = pairs.worst(shown).index.tolist()
        assert len(display.caption_texts_) == len(display.images_) == shown
        for artist, pair in zip(display.caption_texts_, order, strict=True):
            caption = captions[pair]
            _literal(artist, caption_lines(caption))
            if len(" ".join(caption.split())) <= 80:  # whole: only line breaks added
                assert _rejoins(artist.get_text(), " ".join(caption.split()))
            assert artist.get_fontsize() == pytest.approx(font_size)
        for artist in [*display.note_texts_, *display.value_texts_, display.ax_.title]:
            assert artist.get_parse_math() is False
        small = plt.matplotlib.font_manager.FontProperties(size="small").get_size_in_points()
        assert display.note_texts_[0].get_fontsize() == pytest.approx(small)
        # bars: as long as their values on their tracks
        widths = [bar.get_width() for bar in display.bars_["itm"]]
        assert widths == pytest.approx([pairs.itm[p] * widths[0] / pairs.itm[order[0]] for p in order])
        title = display.ax_.title.get_text()
        assert "tiny-random" in title
        assert f"{shown} worst of {n}" in title.replace("\n", " ") or shown == n
        plt.close(fig)


@MISSING_GLYPHS
@pytest.mark.parametrize("font_size", [8, 14])
@FIGURES
@given(
    names=st.lists(
        st.text(alphabet=st.sampled_from(_ALPHABET), min_size=1, max_size=40), min_size=1, max_size=5
    ),
    n=st.integers(1, 12),
    threshold=st.one_of(st.none(), st.floats(0.0, 1.0), st.fixed_dictionaries({"cosine": st.floats(-1, 1)})),
    seed=st.integers(0, 1000),
)
def test_distribution_geometry(font_size, names, n, threshold, seed):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    pairs = _pairs(rng.uniform(0.001, 0.999, n), cosine=rng.uniform(-0.5, 0.9, n), thumbnails=False)
    groups = [names[i % len(names)] for i in range(n)]
    with plt.rc_context({"font.size": font_size}):
        display = pairs.plot_distribution(threshold=threshold, group=groups)
        _check_layout(display.figure_)
        legend = display.legend_
        labels = [t.get_text() for t in legend.get_texts()]
        distinct = list(dict.fromkeys(groups))
        for label, name in zip(labels, distinct, strict=False):
            assert label.startswith(" ".join(name.split()) if len(" ".join(name.split())) <= 40 else "")
        assert all(t.get_parse_math() is False for t in legend.get_texts())
        assert display.figure_._suptitle.get_parse_math() is False
        assert display.kept_["pairs"].tolist() == [groups.count(g) for g in distinct]
        # each group its own colour-blind-safe colour and line style (a second cue beside colour)
        handles = legend.legend_handles[: len(distinct)]
        cues = [(to_hex(h.get_color()), str(h._unscaled_dash_pattern)) for h in handles]  # dashes as given
        assert len(set(cues)) == len(cues)
        assert len({dashes for _, dashes in cues}) == min(len(cues), 4)  # not colour alone
        served = [c for c, _ in cues[: palette_size()]]
        assert len(set(served)) == len(served) and all(c in palette(7) for c in served)
        plt.close(display.figure_)


def test_distribution_share_kept():
    pairs = _pairs([0.1, 0.6, 0.7, 0.9], cosine=[0.1, 0.2, 0.3, 0.4], thumbnails=False)
    display = pairs.plot_distribution(threshold=0.65)
    assert display.kept_.loc["all pairs", "itm"] == 0.5
    (label,) = [t.get_text() for t in display.legend_.get_texts()]
    assert label == "threshold: ITM probability ≥ 0.65 keeps 50.0% (2 of 4)"
    grouped = pairs.plot_distribution(threshold={"itm": 0.5, "cosine": 0.25}, group=["a", "b", "a", "b"])
    assert grouped.kept_.loc["a"].to_dict() == {"pairs": 2, "itm": 0.5, "cosine": 0.5}
    assert grouped.kept_.loc["b"].to_dict() == {"pairs": 2, "itm": 1.0, "cosine": 0.5}
    by_column = pairs.plot_distribution(group="truncated")
    assert by_column.kept_.index.tolist() == ["False"]
    assert [len(ax.patches) > 0 for ax in by_column.axes_] == [True, True]


def test_distribution_refuses_bad_options():
    pairs = _pairs([0.1, 0.6], thumbnails=False)
    with pytest.raises(InputError, match="no column 'source'"):
        pairs.plot_distribution(group="source")
    with pytest.raises(InputError, match="group has 3 entries for 2 pairs"):
        pairs.plot_distribution(group=["a", "b", "c"])
    with pytest.raises(InputError, match="threshold keys"):
        pairs.plot_distribution(threshold={"recall": 0.5})
    with pytest.raises(InputError, match="at most 12 groups"):
        PairDistributionDisplay(np.full(13, 0.5), np.zeros(13), groups=range(13))


def test_dollar_captions_render_literally(tmp_path):
    import matplotlib.pyplot as plt

    pairs = _pairs([0.2, 0.8], texts=["it costs $5 and $10", "x_1^2 and $\\alpha$"])
    display = pairs.plot_worst(2)
    display.figure_.savefig(tmp_path / "slide.png")  # drawing must not fail on unbalanced $
    assert [t.get_text() for t in display.caption_texts_] == ["it costs $5 and $10", "x_1^2 and $\\alpha$"]
    plt.close(display.figure_)


def test_slide_in_a_given_axes_stays_inside_it():
    import matplotlib.pyplot as plt

    pairs = _pairs([0.3, 0.1, 0.5, 0.2], texts=[f"a caption of some length, number {i}" for i in range(4)])
    fig, (left, _right) = plt.subplots(1, 2, figsize=(8, 3))
    display = pairs.plot_worst(4, ax=left)
    assert display.ax_ is left and display.figure_ is fig
    frame = left.get_window_extent()
    renderer = fig.canvas.get_renderer()
    for artist in [*display.caption_texts_, *display.value_texts_, *display.images_]:
        box = artist.get_window_extent(renderer)
        assert frame.x0 - 0.5 <= box.x0 and box.x1 <= frame.x1 + 0.5
        assert frame.y0 - 0.5 <= box.y0 and box.y1 <= frame.y1 + 0.5
    assert_no_overlap(visible_texts(fig))
    assert fig.get_size_inches().tolist() == [8, 3]  # the figure is left as it was


def test_slide_without_thumbnails_and_its_title():
    pairs = _pairs([0.3, 0.1, 0.5], thumbnails=False)
    display = pairs.plot_best(2)
    assert display.images_ == []
    title = display.ax_.title.get_text()  # wrapped to the slide's width
    assert " ".join(title.split("\n")) == (
        "The 2 best of 3 image-caption pairs (highest ITM probability) net: tiny-random"
    )
    assert title.split("\n")[-1] == "net: tiny-random"
    assert [t.get_text() for t in display.caption_texts_] == ["caption 2", "caption 0"]
    _check_layout(display.figure_)


def test_readme_section_runs_and_prints_what_it_says():
    import contextlib
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Scoring pairs", 1)[1].split("\n## ", 1)[0]
    code, printed = re.findall(r"```(?:python|text)\n(.*?)```", section, flags=re.S)[:2]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README scoring pairs", "exec"), {})
    assert out.getvalue() == printed
