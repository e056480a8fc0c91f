"""Text and colour rules shared by every figure: whole texts up to 80 characters, a middle ellipsis
beyond (never a cut inside a word), wrapping, numbered repeated tokens, and a categorical palette
whose colours stay apart for colour-blind readers.

These are pure functions (no matplotlib at import); the figures call them so that one rule holds
everywhere.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Sequence

import numpy as np

__all__ = [
    "CATEGORICAL",
    "MAX_LABEL_CHARS",
    "cielab",
    "contrast_ratio",
    "fit_text",
    "format_number",
    "number_repeats",
    "palette",
    "palette_size",
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
# The categorical palette is Okabe & Ito's (CATEGORICAL, below): distinct under the
# common colour-vision deficiencies. A colour closer than this (CIE76 in CIELAB) to the background
# is left out of the palette drawn on it (black on dark_background).
_MIN_BACKGROUND_DELTA_E = 20.0
#: Okabe & Ito's categorical colours without their yellow, in order (re-exported by
#: :mod:`blipviz.display.rules`, whose colour rules use it).
CATEGORICAL = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")


def cielab(hex_colours: Sequence[str]) -> np.ndarray:
    """sRGB hex colours -> CIELAB (D65), shape (n, 3)."""
    if len(hex_colours) == 0:
        return np.zeros((0, 3))
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


def palette(n: int, background=None) -> list[str]:
    """``n`` categorical colours (lowercase hex): Okabe & Ito's colour-blind-safe palette
    (:data:`CATEGORICAL`), in its order.

    The first :func:`palette_size` colours are distinct as seen normally (no two closer than ΔE 25
    in CIELAB) and under simulated deuteranopia, protanopia and tritanopia (ΔE 15; Machado et al.
    2009, :func:`blipviz.display.rules.simulate_cvd`). Beyond that the colours repeat, and figures
    tell the categories apart by a second cue, a marker per category
    (:func:`blipviz.display.rules.category_cues`).

    Parameters
    ----------
    n : int
    background : matplotlib colour, optional
        What the colours are drawn on: a colour closer than ΔE 20 to it is left out (black points
        vanish on ``dark_background``'s black Axes).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    colours = _serving(background)
    return [colours[i % len(colours)] for i in range(n)]


def palette_size(background=None) -> int:
    """How many distinct colours :func:`palette` gives (on ``background``) before they repeat."""
    return len(_serving(background))


def _serving(background) -> list[str]:
    colours = [c.lower() for c in CATEGORICAL]
    if background is None:
        return colours
    import matplotlib.colors as mcolors

    behind = cielab([mcolors.to_hex(background, keep_alpha=False)])[0]
    gaps = np.linalg.norm(cielab(colours) - behind, axis=1)
    kept = [c for c, gap in zip(colours, gaps, strict=True) if gap >= _MIN_BACKGROUND_DELTA_E]
    return kept or colours


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
