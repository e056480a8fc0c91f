"""Collection options (issue 22 item 4): FAISS index options checked before FAISS allocates anything,
defaults that search any size from 1 vector up; a part-only net (``load_part("ImageEncoder")``)
embeds a collection; a collection reopened without a net gives the class ``load_model`` gives."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import blipviz
from blipviz.collection import Collection, embed_collection
from blipviz.collection import index as faiss_index
from blipviz.collection.index import (
    EF_SEARCH_MAX,
    INDEX_KINDS,
    build_index,
    default_nlist,
    index_options,
    search_index,
)
from blipviz.errors import InputError, InputTypeError, MissingPartError
from blipviz.testing import assert_close, synthetic_images


def _unit(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def no_faiss():
    """Inside the block, reaching FAISS (where memory is allocated) fails the test."""
    return mock.patch.object(faiss_index, "_faiss", side_effect=AssertionError("FAISS was reached"))


def _check_neighbours(x: np.ndarray, q: np.ndarray, scores: np.ndarray, rows: np.ndarray, k: int) -> None:
    """``min(k, n)`` real, distinct neighbours per query, best first, with their true cosines."""
    assert rows.shape == scores.shape == (len(q), min(k, len(x)))
    assert (rows >= 0).all() and (rows < len(x)).all()
    assert all(len(set(r)) == len(r) for r in rows.tolist())
    assert_close(scores, np.einsum("qkd,qd->qk", x[rows], q), magnitude=1.0)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


# ------------------------------------------------------------------------------------ FAISS options
BAD = [
    ("hnsw", {"M": -4}, "M must be between 2 and 256"),  # FAISS allocated 17.7 GB for this one
    ("hnsw", {"M": 1}, "M must be between 2 and 256"),
    ("hnsw", {"M": 257}, "M must be between 2 and 256"),
    ("hnsw", {"M": 0}, "M must be between 2 and 256"),  # 0 was "the default" before
    ("hnsw", {"M": 16.0}, "M must be a whole number"),
    ("hnsw", {"M": True}, "M must be a whole number"),
    ("hnsw", {"efSearch": 0}, "efSearch must be between 1 and 65536"),
    ("hnsw", {"efSearch": 10**8}, "efSearch must be between 1 and 65536"),  # 1.5 GB of heap
    ("hnsw", {"nlist": 4}, "takes 'M', 'efSearch'"),
    ("ivf", {"nlist": 21}, r"nlist must be between 1 and 20 \(the number of vectors, 20\)"),
    ("ivf", {"nlist": -3}, "nlist must be between 1 and 20"),
    ("ivf", {"nprobe": -1}, r"nprobe must be between 1 and 1 \(nlist"),
    ("ivf", {"nlist": 4, "nprobe": 5}, "nprobe must be between 1 and 4"),
    (
        "ivf",
        {"nprob": 64},
        "unknown ivf index option 'nprob'; the ivf index takes 'nlist', 'nprobe'; did you mean",
    ),
    ("ivf", {"M": 8}, "takes 'nlist', 'nprobe'"),
    ("flat", {"nprobe": 4}, "the flat index takes no options"),
]


@pytest.mark.parametrize(("kind", "options", "message"), BAD)
def test_a_bad_index_option_is_an_input_error_before_faiss_allocates(kind, options, message):
    with no_faiss():
        with pytest.raises(InputError, match=message):
            index_options(kind, 20, **options)
        with pytest.raises(InputError, match=message):
            build_index(_unit(20), kind, **options)


def test_a_bad_search_option_is_an_input_error():
    x, q = _unit(50), _unit(3, seed=1)
    ivf, hnsw, flat = build_index(x, "ivf"), build_index(x, "hnsw"), build_index(x, "flat")
    for index, options, message in [
        (ivf, {"nprobe": -1}, "nprobe must be at least 1"),
        (ivf, {"nprobe": 0}, "nprobe must be at least 1"),
        (ivf, {"nprob": 2}, "a search of the ivf index takes 'nprobe'; did you mean"),
        (ivf, {"nlist": 2}, "a search of the ivf index takes 'nprobe'"),
        (hnsw, {"efSearch": 0}, "efSearch must be between 1"),
        (hnsw, {"efSearch": EF_SEARCH_MAX + 1}, "efSearch must be between 1"),
        (hnsw, {"nprobe": 2}, "a search of the hnsw index takes 'efSearch'"),
        (flat, {"nprobe": 2}, "takes no options"),
    ]:
        with pytest.raises(InputError, match=message):
            search_index(index, q, 5, **options)
    with pytest.raises(InputError, match="k must be at least 1"):
        search_index(flat, q, 0)


def test_default_nlist_trains_every_cell_on_39_points_and_grows_as_4_sqrt_n():
    assert [default_nlist(n) for n in (1, 20, 77, 78, 300, 10_000, 1_000_000)] == [1, 1, 1, 2, 7, 256, 4000]
    assert index_options("ivf", 20) == {"nlist": 1, "nprobe": 1}
    assert index_options("ivf", 1_000_000) == {"nlist": 4000, "nprobe": 500}
    assert index_options("hnsw", 5, M=None) == {"M": 32, "efSearch": 64}  # None: the default


def test_ivf_with_default_options_searches_20_vectors():
    """Before: 18 cells over 20 vectors, 2 searched, fewer than k=10 neighbours: an error."""
    x, q = _unit(20, 256), _unit(4, 256, seed=1)
    scores, rows = search_index(build_index(x, "ivf"), q, 10)
    _check_neighbours(x, q, scores, rows, 10)
    exact = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(rows, exact)  # one cell: every vector scored


def test_a_query_whose_cells_hold_fewer_than_k_vectors_gets_more_cells():
    x, q = _unit(60), _unit(5, seed=1)
    index = build_index(x, "ivf", nlist=30, nprobe=1)  # about 2 vectors per cell
    scores, rows = search_index(index, q, 25)
    _check_neighbours(x, q, scores, rows, 25)
    scores, rows = search_index(index, q, 25, nprobe=1)
    _check_neighbours(x, q, scores, rows, 25)
    assert index.nprobe == 1  # the index's own setting is left alone


def _kind_options(draw, kind: str, n: int) -> dict:
    options: dict = {}
    if kind == "ivf":
        if draw(st.booleans()):
            options["nlist"] = draw(st.integers(1, n))
        if draw(st.booleans()):
            options["nprobe"] = draw(st.integers(1, options.get("nlist", default_nlist(n))))
    elif kind == "hnsw":
        if draw(st.booleans()):
            options["M"] = draw(st.integers(2, 48))
        if draw(st.booleans()):
            options["efSearch"] = draw(st.integers(1, 400))
    return options


def _spoil(draw, kind: str, n: int, options: dict) -> dict:
    """``options`` made invalid in one way: a misspelt or foreign name, or a value out of range."""
    nlist = options.get("nlist", default_nlist(n))
    bad_values = {
        "ivf": {
            "nlist": [0, -3, n + 1, n + 10**9, 2.5, True, "4"],
            "nprobe": [0, -1, nlist + 1, nlist + 10**9, 1.0, False],
        },
        "hnsw": {
            "M": [-4, 0, 1, 257, 10**9, 32.0, False],
            "efSearch": [0, -1, EF_SEARCH_MAX + 1, 10**8, "64"],
        },
        "flat": {},
    }[kind]
    names = {"ivf": ("nlist", "nprobe"), "hnsw": ("M", "efSearch"), "flat": ()}[kind]
    foreign = [
        x for x in ("nprob", "nlists", "m", "efsearch", "ef_search", "nlist", "nprobe", "M", "efSearch")
    ]
    foreign = [x for x in foreign if x not in names]
    spoilt = dict(options)
    if bad_values and draw(st.booleans()):
        name = draw(st.sampled_from(sorted(bad_values)))
        spoilt[name] = draw(st.sampled_from(bad_values[name]))
    else:
        spoilt[draw(st.sampled_from(foreign))] = draw(st.integers(1, 64))
    return spoilt


@st.composite
def index_cases(draw):
    n = draw(st.integers(1, 300))
    kind = draw(st.sampled_from(INDEX_KINDS))
    k = draw(st.integers(1, 320))
    options = _kind_options(draw, kind, n)
    valid = draw(st.booleans())
    if not valid:
        options = _spoil(draw, kind, n, options)
    per_search = {}
    if valid and kind != "flat" and draw(st.booleans()):  # a search-time override
        per_search = (
            {"nprobe": draw(st.integers(1, 600))}
            if kind == "ivf"
            else {"efSearch": draw(st.integers(1, 600))}
        )
    return n, kind, k, options, valid, per_search


@settings(max_examples=150, deadline=None)
@given(index_cases())
def test_valid_options_find_min_k_n_neighbours_and_invalid_ones_never_reach_faiss(case):
    n, kind, k, options, valid, per_search = case
    x, q = _unit(n, seed=n), _unit(3, seed=n + 1)
    if not valid:
        with no_faiss(), pytest.raises(InputError):
            build_index(x, kind, **options)
        return
    index = build_index(x, kind, **options)
    scores, rows = search_index(index, q, k, **per_search)
    _check_neighbours(x, q, scores, rows, k)


# ------------------------------------------------------------------------------- on a collection
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """20 small images in a folder (the case of the IVF report)."""
    from PIL import Image

    path = tmp_path_factory.mktemp("images")
    for i, a in enumerate(synthetic_images(20, size=(24, 32))):
        Image.fromarray(a).save(path / f"{i:02d}.png")
    return path


@pytest.fixture(scope="module")
def twenty(tiny, folder, tmp_path_factory):
    return embed_collection(tiny, folder, tmp_path_factory.mktemp("c") / "twenty", progress=False)


def test_a_collection_of_20_images_searches_with_every_index_s_defaults(twenty):
    queries = ["a dog", "a cat", "a bowl of fruit"]
    flat = twenty.search(queries, k=10, rerank=0)
    assert len(flat) == 30
    for kind in ("ivf", "hnsw"):
        got = twenty.search(queries, k=10, rerank=0, index=kind)
        assert got.groupby("query_index").size().tolist() == [10, 10, 10]
    ivf = twenty.search(queries, k=10, rerank=0, index="ivf")
    assert ivf["image"].tolist() == flat["image"].tolist()  # one cell: exact
    tight = twenty.search(queries, k=15, rerank=0, index="hnsw", efSearch=1)
    assert tight.groupby("query_index").size().tolist() == [15, 15, 15]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"index": "hnsw", "M": -4}, "M must be between 2 and 256"),
        ({"index": "ivf", "nprob": 64}, "the ivf index takes 'nlist', 'nprobe'"),
        ({"index": "ivf", "nlist": 21}, r"nlist must be between 1 and 20"),
        ({"index": "ivf", "nlist": -3}, "nlist must be between 1 and 20"),
        ({"index": "ivf", "nprobe": -1}, "nprobe must be between 1 and 1"),
        ({"index": "ivf", "nprobe": 64}, "nprobe must be between 1 and 1"),
        ({"index": "hnsw", "efSearch": 0}, "efSearch must be between 1"),
        ({"index": "hnsw", "nprobe": 4}, "the hnsw index takes 'M', 'efSearch'"),
        ({"index": "flat", "nprobe": 4}, "the flat index takes no options"),
    ],
)
def test_collection_search_refuses_a_bad_option_before_faiss_and_stores_no_index(twenty, options, message):
    before = sorted(p.name for p in twenty.folder.iterdir())
    with no_faiss(), pytest.raises(InputError, match=message):
        twenty.search("a dog", k=5, **options)
    assert sorted(p.name for p in twenty.folder.iterdir()) == before


# ------------------------------------------------------------------------------------- the nets
def test_an_image_encoder_part_embeds_the_collection_the_whole_net_embeds(tiny, folder, twenty, tmp_path):
    """Before: AttributeError ('ImageEncoder' object has no attribute 'require_part')."""
    part = blipviz.load_part("ImageEncoder", "tiny-random")
    made = embed_collection(part, folder, tmp_path / "part", progress=False)
    assert made.ids == twenty.ids
    assert_close(made.embeddings, twenty.embeddings)
    assert made.manifest["net"] == twenty.manifest["net"]
    reopened = Collection.open(made.folder, model=part)  # the part's net is checked as the net
    assert len(reopened) == 20
    found = Collection.open(made.folder).search("a dog", k=3)  # the whole net, from the manifest
    assert found["image"].tolist() == twenty.search("a dog", k=3)["image"].tolist()


def test_a_part_without_the_image_encoder_or_not_a_net_is_a_named_error(folder, tmp_path):
    with pytest.raises(MissingPartError, match="embedding a collection needs the ImageEncoder"):
        embed_collection(blipviz.load_part("TextEncoder", "tiny-random"), folder, tmp_path / "text")
    with pytest.raises(InputTypeError, match="embed_collection needs a blipviz net"):
        embed_collection("tiny-random", folder, tmp_path / "name")


def test_a_collection_opened_without_a_net_loads_the_class_load_model_gives(twenty, texts):
    """Before: a bare BlipNet, without rank or itm_scores."""
    opened = Collection.open(twenty.folder)
    assert type(opened.model) is type(blipviz.load_model("tiny-random"))
    assert isinstance(opened.model, blipviz.BlipITM)
    table = opened.model.rank(opened.image(opened.ids[0]), texts)
    assert len(table) == len(texts) and list(table.columns)[:2] == ["text", "itm"]
