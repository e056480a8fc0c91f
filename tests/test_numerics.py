"""blipviz.testing.assert_close: the tolerance every numerical test states, and what it catches."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from blipviz.testing import assert_close, net_depth, synthetic_images, tolerance


def test_tolerance_is_ulps_times_eps_times_depth_times_magnitude():
    assert tolerance() == 16 * torch.finfo(torch.float32).eps
    assert tolerance(torch.float32, depth=12, magnitude=10.0) == pytest.approx(16 * 1.1920929e-7 * 12 * 10)
    assert tolerance(torch.bfloat16) == 16 * 2.0**-7
    assert tolerance(np.float64, depth=2, ulps=4) == 4 * np.finfo(np.float64).eps * 2
    with pytest.raises(ValueError, match="depth"):
        tolerance(depth=0)


def test_a_few_ulps_pass_and_a_real_difference_fails():
    x = torch.linspace(-3, 3, 101)
    nudged = x + 4 * torch.finfo(torch.float32).eps * 3  # 4 ulps of the largest value
    assert assert_close(nudged, x) > 0
    with pytest.raises(AssertionError, match=r"largest difference .* exceeds the tolerance"):
        assert_close(x + 1e-4, x, depth=12)
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_close(x[:3], x)
    with pytest.raises(AssertionError, match="NaN in one array only"):
        assert_close(torch.tensor([float("nan"), 1.0]), torch.tensor([0.0, 1.0]))
    assert assert_close(np.zeros(3), np.zeros(3)) == 0.0


@pytest.mark.parametrize(
    ("actual", "expected"),
    [([np.inf, 0.0], [np.inf, 100.0]), ([0.0, 5.0], [np.inf, 1.0]), ([-np.inf, 3.0], [-np.inf, 1.0])],
)
def test_infinities_neither_hide_a_difference_nor_widen_the_tolerance(actual, expected):
    with pytest.raises(AssertionError):
        assert_close(np.array(actual), np.array(expected))


def test_equal_infinities_and_nans_compare_equal():
    values = np.array([np.inf, -np.inf, np.nan, 1.0])
    assert assert_close(values, values.copy()) == 0.0
    with pytest.raises(AssertionError, match="infinities differ"):
        assert_close(np.array([np.inf, 1.0]), np.array([-np.inf, 1.0]))


def test_the_magnitude_defaults_to_the_largest_expected_value():
    big = torch.tensor([1000.0, 1.0])
    assert_close(big + torch.tensor([1e-3, 0.0]), big)  # 1e-3 is about 8 ulps of 1000
    with pytest.raises(AssertionError):
        assert_close(big + torch.tensor([1e-3, 0.0]), big, magnitude=1.0)


def test_net_depth_counts_the_layers_on_the_way(tiny):
    assert net_depth(tiny, "image") == tiny.config.vision_config.num_hidden_layers == 2
    assert net_depth(tiny, "text") == 2
    assert net_depth(tiny) == 4
    with pytest.raises(ValueError, match="path"):
        net_depth(tiny, "vision")


def test_the_tolerance_catches_a_wrong_first_token(tiny):
    """The bound is tight enough to tell BLIP's [ENC] from [CLS] on the tiny net."""
    images = synthetic_images(2)
    texts = ["a dog on a beach", "two cats"]
    enc = np.asarray(tiny.itm_scores(images, texts))
    tiny.first_token = "cls"
    try:
        cls = np.asarray(tiny.itm_scores(images, texts))
    finally:
        tiny.first_token = "enc"
    with pytest.raises(AssertionError):
        assert_close(cls, enc, depth=net_depth(tiny), magnitude=1.0)


def _cpu_has_avx2() -> bool:
    try:
        return " avx2" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@pytest.mark.skipif("ATEN_CPU_CAPABILITY" not in os.environ, reason="runs in the second numerical pass")
@pytest.mark.skipif(not _cpu_has_avx2(), reason="torch falls back to its DEFAULT kernels without AVX2")
def test_the_kernels_follow_ATEN_CPU_CAPABILITY():
    """`make test` runs the numerical tests again with ATEN_CPU_CAPABILITY=avx2: they did run on
    another CPU's kernels."""
    assert torch.backends.cpu.get_cpu_capability().lower() == os.environ["ATEN_CPU_CAPABILITY"].lower()
