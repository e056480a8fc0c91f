"""Text and colour rules shared by every figure: whole texts up to 80 characters, a middle ellipsis
beyond (never a cut inside a word), wrapping, numbered repeated tokens, and a qualitative palette
without near-identical pairs.

These are pure functions (no matplotlib at import); the figures call them so that one rule holds
everywhere.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Sequence

import numpy as np

__all__ = [
    "MAX_LABEL_CHARS",
    "cielab",
    "contrast_ratio",
    "fit_text",
    "format_number",
    "number_repeats",
    "palette",
    "readable_text_colour",
    "readable_ticks",
    "wrap_text",
]

#: Texts up to this many characters are always shown whole.
MAX_LABEL_CHARS = 80
_ELLIPSIS = "…"


def fit_text(text: str, max_chars: int | None = MAX_LABEL_CHARS) -> str:
    """``text`` whole when it has at most ``max_chars`` characters, else elided in the middle.

    The cut keeps whole words from the start and the end (the end of a caption is often what tells
    two hard negatives apart: "... drinking tea" / "... eating pizza") and joins them with " … ".
    A single word longer than the budget is elided inside itself, the only case where a word is cut.

    Parameters
    ----------
    text : str
    max_chars : int or None, default 80
        ``None``: never elided.

    Returns
    -------
    str of at most ``max_chars`` characters.
    """
    text = " ".join(str(text).split())
    if max_chars is None or len(text) <= max_chars:
        return text
    if max_chars < 3:
        raise ValueError(f"max_chars must be at least 3, got {max_chars}")
    words = text.split(" ")
    budget = max_chars - 3  # " … " joins the two halves
    head: list[str] = []
    tail: list[str] = []
    used = 0
    i, j = 0, len(words) - 1
    take_tail = False  # alternate, starting with the head
    while i <= j:
        word = words[j] if take_tail else words[i]
        cost = len(word) + (1 if (tail if take_tail else head) else 0)
        if used + cost > budget:
            # the other side may still fit a shorter word
            other = words[i] if take_tail else words[j]
            other_cost = len(other) + (1 if (head if take_tail else tail) else 0)
            if i < j and used + other_cost <= budget:
                take_tail = not take_tail
                continue
            break
        used += cost
        if take_tail:
            tail.insert(0, word)
            j -= 1
        else:
            head.append(word)
            i += 1
        take_tail = not take_tail
    if not head and not tail:  # one very long word: elide characters
        keep = max_chars - 1
        return text[: (keep + 1) // 2] + _ELLIPSIS + text[len(text) - keep // 2 :]
    return f"{' '.join(head)} {_ELLIPSIS} {' '.join(tail)}".strip()


def wrap_text(text: str, width: int = 28, max_chars: int | None = MAX_LABEL_CHARS) -> str:
    """``fit_text(text, max_chars)`` wrapped into lines of about ``width`` characters (``\\n``).

    Words are never broken; a word longer than ``width`` has a line of its own.
    """
    return "\n".join(
        textwrap.wrap(fit_text(text, max_chars), width, break_long_words=False, break_on_hyphens=False)
    ) or fit_text(text, max_chars)


def number_repeats(tokens: Sequence[str]) -> list[str]:
    """Tokens with repeats told apart: ``["a", "cat", "a"] -> ["a (1)", "cat", "a (2)"]``."""
    counts = Counter(tokens)
    seen: Counter[str] = Counter()
    out = []
    for token in tokens:
        if counts[token] > 1:
            seen[token] += 1
            out.append(f"{token} ({seen[token]})")
        else:
            out.append(str(token))
    return out


# ------------------------------------------------------------------------------------ colours
# Candidates in order of preference: tab10, then the distinct members of Dark2, Set1 and dark
# shades (no yellow: it vanishes on white). A colour joins the palette only when it is at least
# _MIN_DELTA_E (CIE76 in CIELAB) from every colour already in it, so no two look alike (tab20's
# blue / light blue pair reads as "the same blue" at marker size; it never gets in).
_CANDIDATES = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",  # tab10
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",  # Dark2
    "#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628", "#f781bf",  # Set1
    "#000000", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#31a354",
    "#756bb1", "#e6550d", "#636363", "#005f5f", "#5f005f", "#5f5f00", "#00005f", "#5f0000",
]  # fmt: skip
_MIN_DELTA_E = 20.0


def cielab(hex_colours: Sequence[str]) -> np.ndarray:
    """sRGB hex colours -> CIELAB (D65), shape (n, 3)."""
    rgb = np.array([[int(h[k : k + 2], 16) / 255.0 for k in (1, 3, 5)] for h in hex_colours])
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def _luminance(colour) -> float:
    """WCAG 2 relative luminance of a matplotlib colour (alpha ignored)."""
    import matplotlib.colors as mcolors

    rgb = np.array(mcolors.to_rgb(colour))
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return float(lin @ np.array([0.2126, 0.7152, 0.0722]))


def contrast_ratio(foreground, background) -> float:
    """WCAG 2 contrast ratio of two matplotlib colours, from 1 (same) to 21 (black on white); text
    needs at least 4.5 (level AA). Alpha is ignored: composite a translucent colour first."""
    a, b = sorted((_luminance(foreground), _luminance(background)))
    return (b + 0.05) / (a + 0.05)


def readable_text_colour(background, preferred=None, min_ratio: float = 4.5) -> tuple:
    """``preferred`` (default: ``rcParams["text.color"]``, the active style's) as RGBA when its
    contrast with ``background`` is at least ``min_ratio``, else black or white, whichever contrasts
    more (one of them always reaches 4.58)."""
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    colour = mcolors.to_rgba(plt.rcParams["text.color"] if preferred is None else preferred)
    if contrast_ratio(colour, background) >= min_ratio:
        return colour
    black, white = (0.0, 0.0, 0.0, 1.0), (1.0, 1.0, 1.0, 1.0)
    return max((black, white), key=lambda c: contrast_ratio(c, background))


def _distinct(candidates: Sequence[str], min_delta: float) -> list[str]:
    lab = cielab(candidates)
    kept: list[int] = []
    for i in range(len(candidates)):
        if all(np.linalg.norm(lab[i] - lab[k]) >= min_delta for k in kept):
            kept.append(i)
    return [candidates[i] for i in kept]


_PALETTE = _distinct(_CANDIDATES, _MIN_DELTA_E)


def palette(n: int) -> list[str]:
    """``n`` qualitative colours (hex), no two closer than ΔE 20 in CIELAB while ``n <= len`` of the
    palette (about 20); beyond that the colours repeat and figures add a second cue (marker, label).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [_PALETTE[i % len(_PALETTE)] for i in range(n)]


def format_number(value: float, spec: str) -> str:
    """``format(value, spec)``, except that a negative value that rounds to zero reads as zero
    (``0.00``, ``0.0%``), never ``-0.00``: a sign only where the number shows one."""
    import math

    if math.copysign(1.0, float(value)) < 0 and format(-float(value), spec) == format(0.0, spec):
        return format(0.0, spec)
    return format(value, spec)


def readable_ticks(axis) -> None:
    """Tick labels of a few digits on a matplotlib ``axis`` (a colorbar's ``cb.ax.yaxis``): when
    the ticks are all below 0.1 in size, or reach 10,000, they share a power of ten written once at
    the axis's end (``0, 4, 8, 12, 16`` and ``×10⁻⁵``, not ``0.00004, 0.00008, ...``); ticks in
    between are left as they are."""
    from matplotlib.ticker import ScalarFormatter

    formatter = ScalarFormatter(useMathText=True)
    formatter.set_powerlimits((-2, 4))
    axis.set_major_formatter(formatter)
