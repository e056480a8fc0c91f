"""blipviz.estimate_seconds / expected_time: one measured pass, multiplied; remembered per net."""

from __future__ import annotations

import pytest

import blipviz
from blipviz.analysis import cost


def test_estimate_is_the_measured_pass_times_the_count(tiny):
    vit = cost.pass_seconds(tiny, "vit")
    itm = cost.pass_seconds(tiny, "itm")
    assert vit > 0 and itm > 0
    assert blipviz.estimate_seconds(tiny, vit_passes=10) == pytest.approx(10 * vit)
    assert blipviz.estimate_seconds(tiny, 4, itm_pairs=6) == pytest.approx(4 * vit + 6 * itm)
    assert blipviz.estimate_seconds(tiny) == 0.0


def test_the_measurement_is_remembered_until_refreshed(tiny, monkeypatch):
    first = cost.pass_seconds(tiny, "vit")
    calls = []
    original = tiny.vision_states
    monkeypatch.setattr(tiny, "vision_states", lambda pixels: calls.append(pixels.shape) or original(pixels))
    assert cost.pass_seconds(tiny, "vit") == first and not calls  # no pass: remembered
    cost.pass_seconds(tiny, "vit", refresh=True)
    size = tiny.config.vision_config.image_size
    assert calls == [(1, 3, size, size)] * 2  # one warm-up, one timed (the default); one image each
    calls.clear()
    cost.pass_seconds(tiny, "vit", refresh=True, repeats=3)
    assert len(calls) == 4


def test_an_itm_pair_is_timed_in_a_batch_of_eight_texts_against_one_image(tiny, monkeypatch):
    batches = []
    original = tiny.itm_logits
    monkeypatch.setattr(
        tiny,
        "itm_logits",
        lambda tok, states: batches.append((len(tok.texts), len(states))) or original(tok, states),
    )
    cost.pass_seconds(tiny, "itm", refresh=True)
    assert batches == [(8, 1), (8, 1)]  # warm-up, timed; the time is divided by 8


def test_a_part_is_measured_through_its_net(tiny):
    assert blipviz.estimate_seconds(tiny.image_encoder, vit_passes=1) == pytest.approx(
        cost.pass_seconds(tiny)
    )


def test_expected_time_says_passes_seconds_device_and_total(tiny):
    line = blipviz.expected_time(tiny, vit_passes=164, itm_pairs=20, what="the curves")
    assert line.startswith("the curves: 164 ViT passes x ")
    assert " + 20 ITM pairs x " in line and "(measured on cpu, " in line and " threads) = " in line


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.2, "under a second"),
        (12.4, "12 s"),
        (89, "89 s"),
        (210, "about 3.5 min"),
        (1500, "about 25 min"),
        (7560, "about 2.1 h"),
    ],
)
def test_format_duration(seconds, words):
    assert cost.format_duration(seconds) == words


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda m: blipviz.estimate_seconds(m, vit_passes=-1), blipviz.InputError),
        (lambda m: blipviz.estimate_seconds(m, vit_passes=float("nan")), blipviz.InputError),
        (lambda m: blipviz.estimate_seconds(m, vit_passes="10"), blipviz.InputTypeError),
        (lambda m: blipviz.estimate_seconds(m, vit_passes=True), blipviz.InputTypeError),
        (lambda m: blipviz.estimate_seconds("tiny-random", vit_passes=1), blipviz.InputTypeError),
        (lambda m: cost.pass_seconds(m, "text"), blipviz.InputError),
        (lambda m: cost.pass_seconds(m, repeats=0), blipviz.InputError),
        (lambda m: blipviz.expected_time(m, 1, what=3), blipviz.InputTypeError),
    ],
)
def test_bad_arguments_are_named_errors(tiny, call, error):
    with pytest.raises(error):
        call(tiny)
