"""Zero-shot classification: class texts, the three methods against the model's own scores, and the
evaluation metrics on hand-built scores."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blipviz
from blipviz import InputError, InputTypeError, ZeroShotClassifier, ZeroShotEvaluation, evaluate_zero_shot
from blipviz.analysis.zero_shot import DEFAULT_TEMPLATE, class_texts
from blipviz.datasets import FASHION_MNIST_LABELS, sample_images
from blipviz.testing import assert_close, fashion_mnist_fixture_image, net_depth

LABELS = list(FASHION_MNIST_LABELS)


@pytest.fixture(scope="module")
def model():
    return blipviz.load_model("tiny-random")


@pytest.fixture(scope="module")
def images():
    """Twelve 28 x 28 grayscale pictures, FashionMNIST-shaped, of classes 0..9, 0, 1."""
    rng = np.random.default_rng(0)
    return [fashion_mnist_fixture_image(c % 10, rng) for c in range(12)]


@pytest.fixture(scope="module")
def itm_reference(model, images):
    """The model's own ITM scores of the images against the class texts."""
    return model.itm_scores(images, class_texts(LABELS))


@pytest.fixture(scope="module")
def cosine_reference(model, images):
    return model.cosine_scores(images, class_texts(LABELS))


@pytest.fixture(scope="module")
def true_labels():
    return [LABELS[c % 10] for c in range(12)]


# ------------------------------------------------------------------------------------ class texts


def test_class_texts_lower_case_the_label_into_the_template():
    assert DEFAULT_TEMPLATE == "This is a photo of a {}"
    assert class_texts(["T-shirt/top", "Ankle Boot"]) == [
        "This is a photo of a t-shirt/top",
        "This is a photo of a ankle boot",
    ]
    assert class_texts(["Cat"], "a {label} in {{braces}}") == ["a cat in {braces}"]
    assert class_texts(["Cat"], "{0}!") == ["cat!"]


@pytest.mark.parametrize("template", ["no placeholder", "{} and {}", "{name}", "{", 3])
def test_class_texts_refuse_templates_without_exactly_one_label_placeholder(template):
    with pytest.raises((InputError, InputTypeError)):
        class_texts(["cat"], template)


def test_classifier_holds_the_formatted_texts(model):
    clf = ZeroShotClassifier(model, ["Dog", "Cat"], template="a picture of the {}")
    assert clf.texts == ["a picture of the dog", "a picture of the cat"]
    assert clf.text_features.texts == clf.texts
    assert clf.labels == ["Dog", "Cat"]
    assert "n_labels=2" in repr(clf) and "'itm'" in repr(clf)


@pytest.mark.parametrize(
    ("labels", "kwargs"),
    [
        (["cat", "Cat"], {}),
        (["cat", " "], {}),
        ([], {}),
        (["cat", "dog"], {"method": "knn"}),
        (["cat", "dog"], {"method": "rerank", "rerank_k": 0}),
        (["cat", "dog"], {"batch_size": 0}),
    ],
)
def test_classifier_refuses_bad_options(model, labels, kwargs):
    with pytest.raises(InputError):
        ZeroShotClassifier(model, labels, **kwargs)


def test_classifier_needs_a_model():
    with pytest.raises(InputTypeError):
        ZeroShotClassifier("Salesforce/blip-itm-base-coco", ["cat", "dog"])


# ---------------------------------------------------------------------------------- the methods


def test_itm_predictions_are_the_argmax_of_itm_scores(model, images, itm_reference):
    clf = ZeroShotClassifier(model, LABELS)
    reference = itm_reference
    proba = clf.predict_proba(images)
    assert isinstance(proba, pd.DataFrame)
    assert proba.shape == (len(images), len(LABELS))
    assert list(proba.columns) == LABELS
    assert list(proba.index) == reference.image_labels
    np.testing.assert_allclose(proba.to_numpy(), reference.values, rtol=0, atol=1e-12)
    expected = [LABELS[i] for i in reference.values.argmax(axis=1)]
    assert clf.predict(images) == expected
    # The tiny net's informative weights make predictions differ from image to image.
    assert len(set(expected)) > 1


def test_cosine_predictions_are_the_argmax_of_cosine_scores(model, images, cosine_reference):
    clf = ZeroShotClassifier(model, LABELS, method="cosine")
    reference = cosine_reference
    np.testing.assert_allclose(clf.predict_proba(images).to_numpy(), reference.values, rtol=0, atol=1e-12)
    assert clf.predict(images) == [LABELS[i] for i in reference.values.argmax(axis=1)]


@pytest.mark.parametrize("k", [1, 3])
def test_rerank_equals_full_itm_on_the_kept_classes(model, images, itm_reference, cosine_reference, k):
    cosine, itm = cosine_reference.values, itm_reference.values
    clf = ZeroShotClassifier(model, LABELS, method="rerank", rerank_k=k)
    proba = clf.predict_proba(images).to_numpy()
    for row in range(len(images)):
        kept = np.argsort(-cosine[row], kind="stable")[:k]
        scored = np.flatnonzero(~np.isnan(proba[row]))
        assert sorted(scored) == sorted(kept)
        # The same float32 computation on a batch of k texts instead of all ten (other matmul
        # shapes and padding length): round-off only.
        assert_close(proba[row, kept], itm[row, kept], depth=net_depth(model), magnitude=1.0)
    for row, label in enumerate(clf.predict(images)):
        kept = np.argsort(-cosine[row], kind="stable")[:k]
        assert label == LABELS[kept[np.argmax(itm[row, kept])]]


def test_rerank_of_every_class_is_full_itm(model, images, itm_reference):
    full = ZeroShotClassifier(model, LABELS, method="rerank", rerank_k=100)
    assert full.rerank_k == len(LABELS)
    assert_close(full.predict_proba(images), itm_reference.values, depth=net_depth(model), magnitude=1.0)


def test_class_texts_are_encoded_once_and_each_image_passes_the_vision_encoder_once(
    model, images, monkeypatch
):
    calls = {"tokenize": 0, "encode_texts": 0, "vision_rows": [], "text_proj": 0}
    for name in ("tokenize", "encode_texts"):
        original = getattr(model, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(model, name, counted)
    vision, text_proj = model.vision_states, model.text_projection

    def vision_counted(pixels):
        calls["vision_rows"].append(int(pixels.shape[0]))
        return vision(pixels)

    def text_counted(*args):
        calls["text_proj"] += 1
        return text_proj(*args)

    monkeypatch.setattr(model, "vision_states", vision_counted)
    monkeypatch.setattr(model, "text_projection", text_counted)
    for method in ("itm", "cosine", "rerank"):
        calls.update(tokenize=0, encode_texts=0, vision_rows=[], text_proj=0)
        clf = ZeroShotClassifier(model, LABELS, method=method, batch_size=5)
        assert (calls["tokenize"], calls["encode_texts"], calls["text_proj"]) == (1, 1, 1)
        clf.predict_proba(images)
        clf.predict(images[:3])
        clf.top_k(images[0])
        assert (calls["tokenize"], calls["encode_texts"], calls["text_proj"]) == (1, 1, 1), method
        # 12 + 3 + 1 images, each through the ViT once, in batches of at most 5.
        assert sum(calls["vision_rows"]) == len(images) + 3 + 1, method
        assert max(calls["vision_rows"]) <= 5


def test_top_k_is_the_sorted_row_of_predict_proba(model, images):
    clf = ZeroShotClassifier(model, LABELS)
    row = clf.predict_proba(images[:1]).iloc[0]
    top = clf.top_k(images[0], k=4)
    assert list(top.columns) == ["label", "score"]
    assert list(top.index) == [1, 2, 3, 4] and top.index.name == "rank"
    assert list(top["label"]) == list(row.sort_values(ascending=False).index[:4])
    np.testing.assert_allclose(top["score"], row.sort_values(ascending=False).to_numpy()[:4])
    assert len(clf.top_k(images[0])) == len(LABELS)  # k=10 by default, at most n_labels
    assert len(clf.top_k(images[0], k=50)) == len(LABELS)
    with pytest.raises(InputError):
        clf.top_k(images[:2])
    with pytest.raises(InputError):
        clf.top_k(images[0], k=0)


def test_rerank_top_k_puts_the_itm_scored_classes_first_then_orders_by_cosine(model, images):
    clf = ZeroShotClassifier(model, LABELS, method="rerank", rerank_k=3)
    top = clf.top_k(images[0])
    assert list(top.columns) == ["label", "score", "cosine"]
    scored, rest = top.iloc[:3], top.iloc[3:]
    assert scored["score"].notna().all() and rest["score"].isna().all()
    assert scored["score"].is_monotonic_decreasing
    assert rest["cosine"].is_monotonic_decreasing
    assert scored["cosine"].min() >= rest["cosine"].max()
    assert top["label"].iloc[0] == clf.predict(images[0])[0]


def test_image_features_and_pixel_tensors_give_the_same_scores(model, images):
    clf = ZeroShotClassifier(model, LABELS)
    expected = clf.predict_proba(images).to_numpy()
    features = model.encode_images(images)
    assert_close(clf.predict_proba(features), expected, depth=net_depth(model), magnitude=1.0)
    pixels = torch.stack([model.preprocessing(im.convert("RGB")) for im in images])
    assert_close(clf.predict_proba(pixels), expected, depth=net_depth(model), magnitude=1.0)
    # Cosine needs only the embeddings; ITM needs the raw states.
    slim = model.encode_images(images, keep_raw=False)
    cosine = ZeroShotClassifier(model, LABELS, method="cosine")
    np.testing.assert_allclose(
        cosine.predict_proba(slim).to_numpy(), cosine.predict_proba(images).to_numpy(), atol=1e-9
    )
    with pytest.raises(InputError, match="keep_raw"):
        clf.predict_proba(slim)


def test_progress_bar_counts_images_and_opens_by_expected_time(model, images, capsys, monkeypatch):
    from blipviz.net import net as net_module

    ZeroShotClassifier(model, LABELS, progress=True, batch_size=5).predict(images)
    err = capsys.readouterr().err
    assert f"{len(images)}/{len(images)}" in err and "image" in err
    # by default a bar opens when the pace of the first batch foresees a long job, else never
    monkeypatch.setattr(net_module, "PROGRESS_MIN_SECONDS", 1e9)
    ZeroShotClassifier(model, LABELS, batch_size=5).predict(images)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(net_module, "PROGRESS_MIN_SECONDS", 0.0)
    ZeroShotClassifier(model, LABELS, batch_size=5).predict(images)
    err = capsys.readouterr().err
    assert f"5/{len(images)}" in err and f"{len(images)}/{len(images)}" in err  # opened after a batch


def test_sample_photographs_classify_offline(model):
    gallery = sample_images(["chelsea", "coffee", "rocket"], max_size=96)
    clf = ZeroShotClassifier(model, gallery.labels)
    assert set(clf.predict(gallery.images)) <= {"cat", "coffee", "rocket"}
    assert list(clf.predict_proba(gallery.images).columns) == ["cat", "coffee", "rocket"]


# ----------------------------------------------------------------------------------- evaluation

# Hand-built case: 3 classes, 7 images. Rows are scores, the true class is given per row.
HAND_SCORES = np.array(
    [
        [0.9, 0.05, 0.05],  # true a, predicted a
        [0.6, 0.3, 0.1],  # true a, predicted a
        [0.2, 0.7, 0.1],  # true a, predicted b (a ranked 2nd)
        [0.1, 0.8, 0.1],  # true b, predicted b
        [0.5, 0.2, 0.3],  # true b, predicted a (b ranked 3rd)
        [0.3, 0.3, 0.4],  # true c, predicted c
        [0.4, 0.4, 0.2],  # true c, tie a/b -> a (first column); c ranked 3rd
    ]
)
HAND_TRUE = ["a", "a", "a", "b", "b", "c", "c"]
HAND_CONFUSION = np.array([[2, 1, 0], [1, 1, 0], [1, 0, 1]])


def test_evaluation_numbers_on_a_hand_built_case():
    ev = ZeroShotEvaluation.from_scores(HAND_SCORES, HAND_TRUE, ["a", "b", "c"])
    np.testing.assert_array_equal(ev.confusion_matrix, HAND_CONFUSION)
    assert ev.predicted_labels == ["a", "a", "b", "b", "a", "c", "a"]
    assert ev.accuracy == pytest.approx(4 / 7)
    pd.testing.assert_series_equal(
        ev.per_class_accuracy,
        pd.Series([2 / 3, 1 / 2, 1 / 2], index=pd.Index(["a", "b", "c"], name="label"), name="accuracy"),
    )
    np.testing.assert_array_equal(ev.true_ranks, [1, 1, 2, 1, 3, 1, 3])
    assert ev.top_k_accuracy(1) == pytest.approx(ev.accuracy)
    assert ev.top_k_accuracy(2) == pytest.approx(5 / 7)
    assert ev.top_k_accuracy(3) == 1.0
    assert ev.n_images == 7
    assert "accuracy=0.571" in repr(ev)


def test_evaluation_true_labels_by_index_or_case_and_absent_classes():
    by_index = ZeroShotEvaluation.from_scores(HAND_SCORES, [0, 0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    by_case = ZeroShotEvaluation.from_scores(HAND_SCORES, [t.upper() for t in HAND_TRUE], ["a", "b", "c"])
    np.testing.assert_array_equal(by_index.confusion_matrix, HAND_CONFUSION)
    np.testing.assert_array_equal(by_case.confusion_matrix, HAND_CONFUSION)
    # A fourth class that no image belongs to: NaN accuracy, an empty row.
    scores = np.hstack([HAND_SCORES, np.zeros((7, 1))])
    ev = ZeroShotEvaluation.from_scores(scores, HAND_TRUE, ["a", "b", "c", "d"])
    assert np.isnan(ev.per_class_accuracy["d"])
    assert ev.confusion_matrix[3].sum() == 0


def test_evaluation_ranks_unscored_classes_last():
    nan = np.nan
    scores = [[0.2, nan, 0.9], [nan, 0.1, nan]]
    ev = ZeroShotEvaluation.from_scores(scores, ["b", "b"], ["a", "b", "c"])
    assert ev.predicted_labels == ["c", "b"]
    np.testing.assert_array_equal(ev.true_ranks, [3, 1])
    with pytest.raises(InputError, match="no score"):
        ZeroShotEvaluation.from_scores([[nan, nan]], ["a"], ["a", "b"])


@pytest.mark.parametrize(
    ("scores", "true", "error"),
    [
        (HAND_SCORES, HAND_TRUE[:-1], InputError),
        (HAND_SCORES, [*HAND_TRUE[:-1], "z"], InputError),
        (HAND_SCORES, [*HAND_TRUE[:-1], 3], InputError),
        (HAND_SCORES, [*HAND_TRUE[:-1], 1.5], InputTypeError),
        (HAND_SCORES, "abc", InputTypeError),
        (HAND_SCORES[:, :2], HAND_TRUE, InputError),
    ],
)
def test_evaluation_refuses_bad_input(scores, true, error):
    with pytest.raises(error):
        ZeroShotEvaluation.from_scores(scores, true, ["a", "b", "c"])


def test_evaluation_to_pandas():
    frame = ZeroShotEvaluation.from_scores(HAND_SCORES, HAND_TRUE, ["a", "b", "c"]).to_pandas()
    assert list(frame.columns) == [
        "image",
        "true",
        "predicted",
        "correct",
        "true_rank",
        "true_score",
        "predicted_score",
    ]
    assert list(frame["image"]) == [f"image {i}" for i in range(7)]
    assert list(frame["correct"]) == [True, True, False, True, False, True, False]
    np.testing.assert_allclose(frame["true_score"], [0.9, 0.6, 0.2, 0.8, 0.2, 0.4, 0.2])
    np.testing.assert_allclose(frame["predicted_score"], [0.9, 0.6, 0.7, 0.8, 0.5, 0.4, 0.4])


def test_evaluation_plot_draws_the_confusion_matrix():
    ev = ZeroShotEvaluation.from_scores(HAND_SCORES, HAND_TRUE, ["a", "b", "c"])
    try:
        display = ev.plot()
        np.testing.assert_array_equal(display.im_.get_array(), HAND_CONFUSION)
        assert [t.get_text() for t in display.ax_.get_xticklabels()] == ["a", "b", "c"]
        assert [t.get_text() for t in display.ax_.get_yticklabels()] == ["a", "b", "c"]
        assert display.text_[0, 0].get_text() == "2"
        fig, ax = plt.subplots()
        normalized = ev.plot(ax=ax, normalize="true", colorbar=False)
        assert normalized.ax_ is ax and normalized.figure_ is fig
        np.testing.assert_allclose(np.diag(normalized.im_.get_array()), ev.per_class_accuracy.to_numpy())
        with pytest.raises(InputError):
            ev.plot(ax=ax, normalize="rows")
    finally:
        plt.close("all")


def test_evaluate_zero_shot_runs_the_classifier(model, images, true_labels):
    for method in ("itm", "rerank"):
        clf = ZeroShotClassifier(model, LABELS, method=method, rerank_k=3)
        ev = evaluate_zero_shot(clf, images, true_labels)
        assert ev.method == method
        assert ev.predicted_labels == clf.predict(images)
        assert ev.true_labels == true_labels
        assert ev.accuracy == pytest.approx(np.mean(np.array(ev.predicted_labels) == np.array(true_labels)))
        assert ev.confusion_matrix.sum() == len(images)
        np.testing.assert_allclose(ev.scores, clf.predict_proba(images).to_numpy(), equal_nan=True)
        # The true class's rank is its position in top_k.
        top = clf.top_k(images[2], k=len(LABELS))
        assert ev.true_ranks[2] == list(top["label"]).index(true_labels[2]) + 1
        assert ev.top_k_accuracy(len(LABELS)) == 1.0
    with pytest.raises(InputError):
        evaluate_zero_shot(clf, images, true_labels[:-1])
    with pytest.raises(InputError):
        evaluate_zero_shot(clf, images, ["scarf"] * len(images))


def test_fashion_mnist_fixture_end_to_end(model, tmp_path):
    """The reference's flow, offline: load FashionMNIST, classify with its names, evaluate, plot."""
    from blipviz.datasets import load_fashion_mnist
    from blipviz.testing import write_fashion_mnist_fixture

    images, labels, names = load_fashion_mnist(source=write_fashion_mnist_fixture(tmp_path, n_per_class=1))
    clf = ZeroShotClassifier(model, names, method="rerank", rerank_k=3)
    assert clf.texts[0] == "This is a photo of a t-shirt/top"
    ev = evaluate_zero_shot(clf, images, labels)
    assert ev.n_images == 10 and ev.confusion_matrix.sum() == 10
    assert ev.top_k_accuracy(3) >= ev.accuracy
    try:
        display = ev.plot(normalize="true")
        assert [t.get_text() for t in display.ax_.get_yticklabels()] == names
    finally:
        plt.close("all")


# ------------------------------------------------------------------------------ prompt ensembles

ENSEMBLE = ["a photo of a {}", "a drawing of the {label}", "{}, seen up close"]
ENSEMBLE_LABELS = ["dog", "Cat", "sneaker"]


@pytest.fixture(scope="module")
def ensemble_images(model):
    """Two images as features with their raw states: every method scores them without the ViT."""
    return model.encode_images(sample_images(["chelsea", "coffee"], max_size=64).images)


def _hand_cosine(model, image_features, labels, templates):
    """CLIP's recipe, written out: every (class, template) text embedded (unit norm), averaged over
    the templates, the mean L2-normalised, then the cosine with each image embedding."""
    texts = [t.format(label.lower(), label=label.lower()) for label in labels for t in templates]
    emb = model.encode_texts(texts).embeddings.double().reshape(len(labels), len(templates), -1)
    classes = torch.nn.functional.normalize(emb.mean(dim=1), dim=-1)
    return (image_features.embeddings.double() @ classes.T).numpy()


def _hand_itm(model, image_features, labels, templates):
    """The mean over the templates of the ITM match probability of each (class, template) text."""
    texts = [t.format(label.lower(), label=label.lower()) for label in labels for t in templates]
    itm = np.asarray(model.itm_scores(image_features, texts))
    return itm.reshape(len(image_features), len(labels), len(templates)).mean(axis=2)


def test_one_template_gives_exactly_todays_scores(model, ensemble_images):
    for method in ("itm", "cosine", "rerank"):
        alone = ZeroShotClassifier(model, ENSEMBLE_LABELS, template=ENSEMBLE[0], method=method, rerank_k=2)
        listed = ZeroShotClassifier(model, ENSEMBLE_LABELS, template=ENSEMBLE[:1], method=method, rerank_k=2)
        again = ZeroShotClassifier(
            model, ENSEMBLE_LABELS, template=ENSEMBLE[:1] * 3, method=method, rerank_k=2
        )
        expected = alone.predict_proba(ensemble_images).to_numpy()
        np.testing.assert_array_equal(listed.predict_proba(ensemble_images).to_numpy(), expected)
        np.testing.assert_array_equal(again.predict_proba(ensemble_images).to_numpy(), expected)
    reference = np.asarray(model.itm_scores(ensemble_images, class_texts(ENSEMBLE_LABELS, ENSEMBLE[0])))
    itm = ZeroShotClassifier(model, ENSEMBLE_LABELS, template=ENSEMBLE[0]).predict_proba(ensemble_images)
    np.testing.assert_allclose(itm.to_numpy(), reference, rtol=0, atol=1e-12)
    # the attributes of a str template are what they were; a sequence keeps its shape
    assert alone.template == ENSEMBLE[0] and alone.templates == (ENSEMBLE[0],)
    assert alone.texts == class_texts(ENSEMBLE_LABELS, ENSEMBLE[0])
    assert listed.template == (ENSEMBLE[0],) and listed.texts == [
        ["a photo of a dog"],
        ["a photo of a cat"],
        ["a photo of a sneaker"],
    ]


def test_ensemble_scores_are_clips_mean_embedding_and_the_mean_itm_probability(model, ensemble_images):
    depth = net_depth(model)
    cosine = ZeroShotClassifier(model, ENSEMBLE_LABELS, template=ENSEMBLE, method="cosine")
    assert cosine.texts[1] == ["a photo of a cat", "a drawing of the cat", "cat, seen up close"]
    assert cosine.text_index.shape == (3, 3) and len(cosine.text_features) == 9
    hand = _hand_cosine(model, ensemble_images, ENSEMBLE_LABELS, ENSEMBLE)
    assert_close(cosine.predict_proba(ensemble_images), hand, depth=depth, magnitude=1.0)
    itm = ZeroShotClassifier(model, ENSEMBLE_LABELS, template=ENSEMBLE)
    hand_itm = _hand_itm(model, ensemble_images, ENSEMBLE_LABELS, ENSEMBLE)
    assert_close(itm.predict_proba(ensemble_images), hand_itm, depth=depth, magnitude=1.0)
    # rerank: the 2 classes of highest ensemble cosine, scored by their mean ITM probability
    rerank = ZeroShotClassifier(model, ENSEMBLE_LABELS, template=ENSEMBLE, method="rerank", rerank_k=2)
    proba = rerank.predict_proba(ensemble_images).to_numpy()
    for row in range(len(ensemble_images)):
        kept = np.sort(np.argsort(-hand[row], kind="stable")[:2])
        assert sorted(np.flatnonzero(~np.isnan(proba[row]))) == kept.tolist()
        assert_close(proba[row, kept], hand_itm[row, kept], depth=depth, magnitude=1.0)
    assert "templates=3" in repr(itm)


def test_texts_the_net_reads_alike_pass_the_text_encoder_once(model):
    # "A Photo of a {}." normalises to "a photo of a {}": the same encoder input
    clf = ZeroShotClassifier(
        model, ["dog", "cat"], template=["a photo of a {}", "A Photo of a {}.", "art: {}"]
    )
    assert len(clf.text_features) == 4
    np.testing.assert_array_equal(clf.text_index, [[0, 0, 1], [2, 2, 3]])
    assert clf.texts[0] == ["a photo of a dog", "A Photo of a dog.", "art: dog"]


@pytest.mark.parametrize(
    ("template", "error", "message"),
    [
        (["a photo of a {}", "no placeholder"], InputError, r"template\[1\]"),
        (["{} and {}", "a {}"], InputError, r"template\[0\]"),
        (["a {}", "b {}", "{"], InputError, r"template\[2\] = '\{' is not a valid format string"),
        (["a {}", 3], InputTypeError, r"template\[1\] must be a str, got int"),
        (["a {}", "{name}"], InputError, r"template\[1\]"),
        ([], InputError, "at least one template"),
        (3, InputTypeError, "template must be a str or a sequence"),
        ("no placeholder", InputError, "^template must hold exactly one placeholder"),
    ],
)
def test_bad_templates_are_named_by_their_index(model, template, error, message):
    with pytest.raises(error, match=message):
        ZeroShotClassifier(model, ["dog"], template=template)
    with pytest.raises(error, match=message):
        class_texts(["dog"], template)


def test_evaluation_records_the_templates_and_names_their_number(model, ensemble_images):
    clf = ZeroShotClassifier(model, ENSEMBLE_LABELS, template=ENSEMBLE, method="cosine")
    ev = evaluate_zero_shot(clf, ensemble_images, ["cat", "sneaker"])
    assert ev.template == tuple(ENSEMBLE) and ev.templates == tuple(ENSEMBLE)
    assert "templates=3" in repr(ev)
    display = ev.plot()
    title = " ".join(display.ax_.get_title().split())  # wrapped to the figure's width
    assert "3 templates" in title and ENSEMBLE[1] not in title
    one = ZeroShotEvaluation.from_scores(HAND_SCORES, HAND_TRUE, ["a", "b", "c"], template=["a {}"])
    assert one.templates == ("a {}",) and "template 'a {}'" in " ".join(one.plot().ax_.get_title().split())
    assert ZeroShotEvaluation.from_scores(HAND_SCORES, HAND_TRUE, ["a", "b", "c"]).templates == ()
    with pytest.raises(InputError, match=r"template\[1\]"):
        ZeroShotEvaluation.from_scores(HAND_SCORES, HAND_TRUE, ["a", "b", "c"], template=["a {}", "b"])
    top = clf.plot_top_k(sample_images(["chelsea"], max_size=64).images[0], k=2)
    assert "mean of 3 templates" in top.figure_._suptitle.get_text().replace("\n", " ")
    assert [t.get_text() for t in top.ax_.get_yticklabels()] == list(top.table["label"])
    plt.close("all")


# Templates drawn with what breaks naive formatting and plotting: `$` (mathtext), escaped braces,
# non-Latin scripts, punctuation that BLIP's normalisation removes.
_PIECES = st.lists(
    st.sampled_from(
        ["a", "photo", "$", "$x$", "{", "}", "日本の", "фото", "é", "ß", ".", "!", " ", "of", "كلب"]
    ),
    max_size=4,
).map(lambda parts: "".join(parts).replace("{", "{{").replace("}", "}}"))
TEMPLATES = st.tuples(_PIECES, st.sampled_from(["{}", "{label}", "{0}"]), _PIECES).map("".join)
ENSEMBLES = st.lists(TEMPLATES, min_size=1, max_size=5)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(template=TEMPLATES, n=st.integers(1, 5))
def test_an_ensemble_of_one_template_repeated_is_that_template(model, ensemble_images, template, n):
    for method in ("cosine", "itm"):
        alone = ZeroShotClassifier(model, ENSEMBLE_LABELS, template=template, method=method)
        repeated = ZeroShotClassifier(model, ENSEMBLE_LABELS, template=[template] * n, method=method)
        np.testing.assert_array_equal(
            repeated.predict_proba(ensemble_images).to_numpy(),
            alone.predict_proba(ensemble_images).to_numpy(),
        )


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(templates=ENSEMBLES)
def test_ensemble_cosine_is_the_hand_computed_mean_of_normalised_embeddings(
    model, ensemble_images, templates
):
    clf = ZeroShotClassifier(model, ENSEMBLE_LABELS, template=templates, method="cosine")
    hand = _hand_cosine(model, ensemble_images, ENSEMBLE_LABELS, templates)
    assert_close(clf.predict_proba(ensemble_images), hand, depth=net_depth(model), magnitude=1.0)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), templates=ENSEMBLES)
def test_the_order_of_the_templates_does_not_change_the_scores(model, ensemble_images, data, templates):
    shuffled = data.draw(st.permutations(templates))
    for method in ("cosine", "itm"):
        first = ZeroShotClassifier(model, ENSEMBLE_LABELS, template=templates, method=method)
        second = ZeroShotClassifier(model, ENSEMBLE_LABELS, template=shuffled, method=method)
        assert_close(
            second.predict_proba(ensemble_images),
            first.predict_proba(ensemble_images).to_numpy(),
            depth=net_depth(model),
            magnitude=1.0,
        )
