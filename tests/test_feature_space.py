import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.offsetbox import AnnotationBbox
from PIL import Image

import blipviz
from blipviz.analysis.feature_space import feature_space_map, reduce_to_2d


def _clusters(n_per=20, n_clusters=3, dim=256, seed=0):
    """Separable synthetic embeddings on the unit sphere: tight clusters around random centres."""
    rs = np.random.RandomState(seed)
    centres = rs.randn(n_clusters, dim)
    x = np.concatenate([c + 0.15 * rs.randn(n_per, dim) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, np.repeat([f"class {k}" for k in range(n_clusters)], n_per)


def _image_features(n, dim=256, seed=0):
    rs = np.random.RandomState(seed)
    emb = torch.nn.functional.normalize(torch.from_numpy(rs.randn(n, dim)).float(), dim=-1)
    thumbs = [Image.new("RGB", (8, 6), tuple(int(v) for v in rs.randint(0, 255, 3))) for _ in range(n)]
    return blipviz.ImageFeatures(emb, emb, None, [f"img{i}" for i in range(n)], thumbs)


@pytest.fixture(scope="module")
def umap_run():
    x, labels = _clusters()
    return x, labels, blipviz.feature_space_map(embeddings=x, labels=labels, random_state=37).plot()


def test_umap_preserves_neighbourhoods(umap_run):
    from sklearn.manifold import trustworthiness

    x, labels, disp = umap_run
    coords = disp.coords_[["x", "y"]].to_numpy()
    assert trustworthiness(x, coords, n_neighbors=5, metric="cosine") > 0.9
    # the clusters stay apart: every point's nearest neighbour in the map has its label
    d = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() > 0.95


def test_fixed_random_state_gives_identical_coordinates(umap_run):
    x, labels, disp = umap_run
    again = feature_space_map(embeddings=x, labels=labels, random_state=37)
    pd.testing.assert_frame_equal(again.coords_, disp.coords_)
    for method in ("tsne", "pca"):
        a = reduce_to_2d(x, method, random_state=3)
        np.testing.assert_array_equal(a, reduce_to_2d(x, method, random_state=3))


def test_points_legend_and_coords_frame(umap_run):
    _, labels, disp = umap_run
    assert list(disp.coords_.columns) == ["x", "y", "kind", "label", "name", "truncated_by"]
    assert (disp.coords_["kind"] == "point").all()
    assert list(disp.coords_["label"]) == list(labels)
    np.testing.assert_allclose(disp.scatter_.get_offsets(), disp.coords_[["x", "y"]].to_numpy())
    assert [t.get_text() for t in disp.legend_.get_texts()] == ["class 0", "class 1", "class 2"]
    colours = disp.scatter_.get_facecolors()
    assert len({tuple(c) for c in colours}) == 3
    assert disp.thumbnails_ == [] and disp.texts_ == []


@pytest.mark.parametrize("method", ["umap", "tsne", "pca"])
def test_three_items_work_with_every_method(tiny_model, small_images, method):
    disp = blipviz.feature_space_map(
        model=tiny_model, images=small_images[:2], texts=["a red square"], method=method
    ).plot()
    assert disp.coords_.shape == (3, 6)
    assert list(disp.coords_["kind"]) == ["image", "image", "text"]
    assert np.isfinite(disp.coords_[["x", "y"]].to_numpy()).all()
    assert len(disp.ax_.findobj(AnnotationBbox)) == len(disp.thumbnails_) == 2
    assert [t.get_text() for t in disp.texts_] == ["a red square"]


def test_model_embeddings_match_the_encoders(tiny_model, small_images):
    texts = ["a dog", "a cat"]
    disp = feature_space_map(model=tiny_model, texts=texts, images=[small_images[0]], method="pca")
    ref = blipviz.feature_space_map(
        [tiny_model.encode_images([small_images[0]]), tiny_model.encode_texts(texts)], method="pca"
    )
    np.testing.assert_allclose(disp.coords_[["x", "y"]], ref.coords_[["x", "y"]], atol=1e-5)
    assert list(disp.coords_["name"]) == list(ref.coords_["name"]) == ["image 0", "a dog", "a cat"]


def test_thousands_of_items_subsample_thumbnails_not_points():
    feats = _image_features(1500)
    disp = blipviz.feature_space_map(feats, method="pca").plot(max_thumbnails=25)
    assert len(disp.scatter_.get_offsets()) == 1500
    assert len(disp.thumbnails_) == 25
    assert len(disp.ax_.findobj(AnnotationBbox)) == 25
    assert disp.legend_ is None  # one label only


def test_given_axes_and_items_with_embeddings():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    x, _ = _clusters(n_per=3, n_clusters=2)
    texts = [f"caption {i}" for i in range(6)]
    disp = blipviz.feature_space_map(texts=texts, embeddings=x, method="pca").plot(ax=ax, max_texts=4)
    assert disp.ax_ is ax and disp.figure_ is fig
    assert len(disp.texts_) == 4
    assert set(t.get_text() for t in disp.texts_) <= set(texts)


def test_errors():
    x, _ = _clusters(n_per=3, n_clusters=1)
    with pytest.raises(ValueError, match="method"):
        reduce_to_2d(x, "mds")
    with pytest.raises(ValueError, match="labels"):
        blipviz.feature_space_map(embeddings=x, labels=["a"]).plot()
    with pytest.raises(ValueError, match="model"):
        blipviz.feature_space_map(texts=["a dog", "a cat", "a cow"]).plot()
    with pytest.raises(ValueError, match="embeddings for"):
        blipviz.feature_space_map(texts=["a", "b"], embeddings=x).plot()
    with pytest.raises(ValueError, match="n_neighbors"):
        reduce_to_2d(x, "umap", n_neighbors=3)
    assert reduce_to_2d(x[:1], "umap").tolist() == [[0.0, 0.0]]
    assert reduce_to_2d(x[:2], "tsne").shape == (2, 2)


# --------------------------------------------------------------------------------- input rules
def test_a_str_in_a_mixed_list_is_refused_never_guessed(tiny_model, small_images, tmp_path, monkeypatch):
    with pytest.raises(blipviz.InputError, match=r"items\[1\].*images=.*texts="):
        blipviz.feature_space_map([small_images[0], "photos/dgo.jpg"], tiny_model, method="pca").plot()
    monkeypatch.chdir(tmp_path)
    # a text that names an existing file
    Image.fromarray(small_images[1]).save(tmp_path / "a dog", format="PNG")
    with pytest.raises(blipviz.InputError, match=r"items\[1\]"):
        blipviz.feature_space_map([small_images[0], "a dog"], tiny_model, method="pca").plot()


def test_explicit_images_and_texts(tiny_model, small_images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(small_images[1]).save(tmp_path / "a dog", format="PNG")
    Image.fromarray(small_images[2]).save(tmp_path / "photo.png")
    disp = blipviz.feature_space_map(
        model=tiny_model, images=[small_images[0], "photo.png"], texts=["a dog", "a cat"], method="pca"
    ).plot()
    assert list(disp.coords_["kind"]) == ["image", "image", "text", "text"]
    assert list(disp.coords_["name"]) == ["image 0", "photo.png", "a dog", "a cat"]
    one = blipviz.feature_space_map(
        model=tiny_model, texts="a dog", images=small_images[0], method="pca"
    ).plot()
    assert list(one.coords_["kind"]) == ["image", "text"]
    with pytest.raises(blipviz.ImageLoadError, match=r"dgo\.jpg"):  # a misspelled path stays an image
        blipviz.feature_space_map(model=tiny_model, images=["photos/dgo.jpg"], texts=["a dog"]).plot()


def test_unambiguous_items_may_still_be_mixed(tiny_model, small_images, tmp_path):
    from pathlib import Path

    path = tmp_path / "photo.png"
    Image.fromarray(small_images[2]).save(path)
    texts = tiny_model.encode_texts(["a dog", "a cat"])
    disp = blipviz.feature_space_map(
        [Image.fromarray(small_images[0]), small_images[1], Path(path), texts], tiny_model, method="pca"
    ).plot()
    assert list(disp.coords_["kind"]) == ["image"] * 3 + ["text"] * 2
    assert list(disp.coords_["name"])[2:] == ["photo.png", "a dog", "a cat"]


def test_features_of_another_net_are_refused(tiny_model, small_images):
    other = blipviz.load_model("tiny-random", seed=1)
    foreign = other.encode_texts(["a dog", "a cat"])
    with pytest.raises(blipviz.InputError, match="another net"):
        blipviz.feature_space_map(images=small_images, texts=foreign, model=tiny_model, method="pca").plot()
    mine = tiny_model.encode_texts(["a bird"])
    with pytest.raises(blipviz.InputError, match="two nets"):
        blipviz.feature_space_map(texts=[foreign, mine], method="pca").plot()


def test_explicit_texts_with_embeddings():
    x, _ = _clusters(n_per=2, n_clusters=2)
    disp = blipviz.feature_space_map(texts=["a", "b", "c", "d"], embeddings=x, method="pca").plot()
    assert list(disp.coords_["kind"]) == ["text"] * 4 and disp.thumbnails == [None] * 4


def test_the_first_umap_map_of_a_session_says_it_compiles_once(monkeypatch, capsys):
    """The note before UMAP's first fit in a process (numba compiles then), and its measured time
    after it; nothing on later fits."""
    import umap

    from blipviz.analysis import feature_space

    class Quick:  # umap.UMAP's interface, without the compile
        def __init__(self, **options):
            self.options = options

        def fit_transform(self, x):
            return np.asarray(x)[:, :2]

    monkeypatch.setattr(umap, "UMAP", Quick)
    monkeypatch.setattr(feature_space, "_UMAP_FITTED", False)
    x = np.random.default_rng(0).normal(size=(12, 5))
    feature_space.reduce_to_2d(x, method="umap", random_state=0)
    first = capsys.readouterr().err
    assert "first map in this Python session" in first and "UMAP ready: the first map took" in first
    feature_space.reduce_to_2d(x, method="umap", random_state=0)
    assert capsys.readouterr().err == ""
