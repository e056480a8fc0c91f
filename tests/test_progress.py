"""Progress bars by expected time (blipviz.net.net.Progress): a long loop shows one as soon as its
pace says it will take more than PROGRESS_MIN_SECONDS, a quick one never, whatever the counts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blipviz.net.net import PROGRESS_MIN_SECONDS, Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(total: int, seconds_per_unit: float, batch: int, show=None):
    clock = Clock()
    progress = Progress(total, show=show, desc="test", clock=clock)
    opened_at = None
    done = 0
    while done < total:
        step = min(batch, total - done)
        clock.now += step * seconds_per_unit
        progress.update(step)
        done += step
        if progress.bar is not None and opened_at is None:
            opened_at = done
    progress.close()
    return progress, opened_at


@settings(max_examples=60, deadline=None)
@given(
    total=st.integers(1, 5000),
    seconds_per_unit=st.floats(1e-4, 10.0),
    batch=st.integers(1, 64),
)
def test_a_bar_opens_exactly_when_the_pace_says_the_job_is_long(total, seconds_per_unit, batch):
    progress, opened_at = _run(total, seconds_per_unit, batch)
    first = min(batch, total)
    expected = seconds_per_unit * total  # the pace is constant: the first batch foresees it
    if expected > PROGRESS_MIN_SECONDS * 1.001 and first < total:
        assert opened_at == first  # at once, starting where the work is
        assert progress.bar.n == total
    elif expected < PROGRESS_MIN_SECONDS * 0.999 or first >= total:
        assert opened_at is None  # quick, or done in one step: no bar


@pytest.mark.parametrize("show", [True, False])
def test_show_true_or_false_overrides_the_pace(show):
    progress, _ = _run(100, 1e-5 if show else 10.0, 10, show=show)
    assert (progress.bar is not None) is show
    if show:
        assert progress.bar.n == 100 and progress.bar.total == 100


def test_a_resumed_job_starts_where_it_was_and_paces_only_new_work():
    clock = Clock()
    progress = Progress(1000, show=None, desc="resume", initial=900, clock=clock)
    clock.now += 1.0  # 10 new units in 1 s: 100 more expected in 10 s
    progress.update(10)
    assert progress.bar is not None and progress.bar.n == 910 and progress.bar.total == 1000
    progress.close()


def test_postfix_set_before_the_bar_opens_is_kept():
    clock = Clock()
    progress = Progress(100, show=None, desc="rows", clock=clock)
    progress.set_postfix(skipped=2, refresh=False)
    clock.now += 10.0
    progress.update(1)
    assert progress.bar is not None and "skipped=2" in str(progress.bar)
    progress.close()


def test_the_vision_encoder_loop_opens_a_bar_by_pace(tiny, monkeypatch, capsys):
    """iter_image_states: a bar when the pace foresees a long job, none when it does not (the
    threshold moved instead of the clock: no test here depends on how fast this machine is)."""
    from blipviz.net import net as net_module
    from blipviz.testing import synthetic_images

    images = synthetic_images(6)
    monkeypatch.setattr(net_module, "PROGRESS_MIN_SECONDS", 1e9)
    list(tiny.iter_image_states(images, 2, None))
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(net_module, "PROGRESS_MIN_SECONDS", 0.0)
    list(tiny.iter_image_states(images, 2, None))
    err = capsys.readouterr().err
    assert "vision encoder" in err and "2/6" in err and "6/6" in err  # opened after the first batch
    list(tiny.iter_image_states([], 2, True))  # nothing to do: no bar at all
    assert capsys.readouterr().err == ""
