"""Render every kind of blipviz figure to PNG, with the full ViT-B/16 geometry and random weights.

The net is ``blipviz.load_model(pretrained=False)``: BLIP's ViT-B/16 architecture with informative
random weights (seeded), so every figure has its real size, grid and labels but its numbers mean
nothing. Every PNG is stamped "random weights: form only". The inputs are the photographs shipped
with installed packages (:func:`blipviz.datasets.sample_images`); nothing is downloaded.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python docs/gallery.py                      # all, into docs/gallery
    PYTHONPATH=. .venv/bin/python docs/gallery.py --only heatmap attention
    PYTHONPATH=. .venv/bin/python docs/gallery.py --quick --out /tmp/g  # tiny net, a smoke run

The full run takes 10 to 20 minutes on 2 CPU cores (occlusion and the deletion / insertion curves
are most of it); ``--quick`` about a minute. HTML tables are photographed with headless Chromium
(``/usr/bin/chromium``); without it they are skipped with a printed reason. ``README.md`` in the
output folder is written last: every PNG there, with what it shows and the call that makes it.
"""

from __future__ import annotations

import argparse
import html
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import blipviz
from blipviz.datasets import sample_images
from blipviz.testing import MAP_CAPTIONS, MAP_PHOTOS

STAMP = "random weights: form only"
DPI = 90
SMALL_DPI = 80  # for figures above MAX_BYTES at DPI
MAX_BYTES = 300 * 1024  # above it at SMALL_DPI too: 256 colours (the photo grids, about 400 kB)
CHROMIUM = Path("/usr/bin/chromium")
HTML_WIDTH = 1050  # px, the browser window's width for the HTML tables

# One true description and one hard negative per photograph of the heatmap, in the photographs' order.
PHOTOS = ["astronaut", "grace_hopper", "rocket", "coffee", "motorcycle"]
TEXTS = [
    "an astronaut in an orange suit holding a helmet",
    "an astronaut in an orange suit holding a cat",
    "a portrait of a woman in a navy uniform wearing glasses",
    "a portrait of a man in a navy uniform wearing a beard",
    "a rocket on a launch pad lit by floodlights at night",
    "a rocket on a launch pad lit by the sun at noon",
    "a cup of coffee on a saucer with a spoon",
    "a cup of coffee on a saucer with a fork",
    "a red motorcycle parked in a garage",
    "a red motorcycle racing on a track",
]
TRUE_PAIRS = [(i, 2 * i) for i in range(len(PHOTOS))]

# The feature-space map: blipviz.testing's crowded scene (six photographs, eight captions, some long).
MAP_PHOTOS, CAPTIONS = list(MAP_PHOTOS), list(MAP_CAPTIONS)
LAYOUTS = ("per-modality", "joint", "side-by-side")

# The feature-space map at its design target, 300 items: every photograph of sample_images (13)
# and 287 captions, 22 settings of each photograph's subject (some with "$", some longer than 80
# characters), coloured by subject.
MAP_300_SUBJECTS = {
    "astronaut": "an astronaut",
    "cameraman": "a cameraman",
    "chelsea": "a ginger cat",
    "coffee": "a cup of coffee",
    "coins": "old coins",
    "hubble_deep_field": "distant galaxies",
    "moon": "the moon",
    "motorcycle": "a red motorcycle",
    "retina": "a retina scan",
    "rocket": "a rocket",
    "china": "a chinese temple",
    "flower": "a pink flower",
    "grace_hopper": "a naval officer",
}
MAP_300_SETTINGS = [
    "in a studio", "at night", "under a blue sky", "seen from above", "in close-up", "on a table",
    "behind glass", "in black and white", "on a $5 postcard", "with a long shadow", "by a window",
    "in the rain", "as an oil painting", "on a poster from 1969", "at dawn", "in a magazine",
    "on a stamp worth $0.50", "drawn by a child", "in a snow globe", "out of focus", "on a screen",
    "in a museum, photographed from the far end of the hall on a crowded and rainy Sunday afternoon",
]  # fmt: skip
MAP_300_CAPTIONS = [
    f"{subject} {where}" for subject in MAP_300_SUBJECTS.values() for where in MAP_300_SETTINGS
]
MAP_300_CAPTIONS.append("a photograph of nothing in particular")  # 287 captions, 300 items

# Cross-attention and explanations: one photograph, one sentence.
ATTENTION_TEXT = "an astronaut in an orange suit with a flag and a space shuttle behind her"

# Zero-shot classification.
ZERO_SHOT_LABELS = ["cat", "astronaut", "coffee", "rocket", "dog", "car"]
ZERO_SHOT_TEMPLATE = "a photo of a {}"
ZERO_SHOT_PHOTOS = {"chelsea": "cat", "astronaut": "astronaut", "coffee": "coffee", "rocket": "rocket"}

# Retrieval: eight photographs, two captions written for each.
RETRIEVAL_CAPTIONS = {
    "astronaut": ["an astronaut in a white space suit in front of a flag", "a smiling woman in a spacesuit"],
    "chelsea": ["a tabby cat looking to the side", "close-up of a ginger cat with long whiskers"],
    "coffee": ["a cup of coffee on a saucer with a spoon", "a red cup of espresso seen from above"],
    "rocket": ["a rocket on the launch pad", "a space shuttle ready for launch beside its tower"],
    "motorcycle": ["a red motorcycle seen from the side", "a motorbike on a white background"],
    "china": ["a chinese temple among trees", "a pagoda under a blue sky"],
    "flower": ["a pink flower in close-up", "petals of a flower with a bee on them"],
    "grace_hopper": ["a portrait of a woman in a navy uniform", "an officer in a dark uniform and cap"],
}


@dataclass(frozen=True)
class Entry:
    """One PNG of the gallery: its file name, what it shows, and the call that makes it."""

    file: str
    what: str
    call: str


class Session:
    """The net and the inputs, each computed once and only when a figure needs it."""

    def __init__(self, out: Path, quick: bool) -> None:
        self.out, self.quick = out, quick
        self.made: list[Path] = []

    @cached_property
    def model(self) -> blipviz.BlipITM:
        torch.manual_seed(0)
        if self.quick:
            return blipviz.load_model("tiny-random")
        return blipviz.load_model(pretrained=False)

    @cached_property
    def photos(self):
        return sample_images(PHOTOS)

    @cached_property
    def features(self) -> blipviz.ImageFeatures:
        """The five photographs of the heatmap, through the ViT once (raw states kept)."""
        return self.model.encode_images(self.photos.images, labels=self.photos.names)

    # ----------------------------------------------------------------------------- saving
    def save(self, fig, name: str) -> None:
        """Stamp the figure below its bottom-right corner (bbox_inches="tight" grows the PNG to
        hold the stamp, so it covers nothing) and write it: at :data:`DPI`, or at :data:`SMALL_DPI`
        when that is above :data:`MAX_BYTES`, or at last in 256 dithered colours."""
        fig.text(0.995, 0.0, STAMP, ha="right", va="top", fontsize=9, color="#b2182b", style="italic")
        path = self.out / name
        for dpi in (DPI, SMALL_DPI):
            fig.savefig(path, dpi=dpi, bbox_inches="tight", pad_inches=0.12, metadata={"Software": None})
            if path.stat().st_size <= MAX_BYTES:
                break
        else:  # photographs in many panels
            to_palette(path)
        plt.close(fig)
        self.report(path)

    def save_html(self, body: str, name: str, height: int) -> None:
        """Photograph an HTML table with headless Chromium, stamped; skipped (printed) without it."""
        if not CHROMIUM.exists():
            print(f"    skipped {name}: no Chromium at {CHROMIUM} (the HTML table cannot be photographed)")
            return
        page = (
            '<!DOCTYPE html><html><head><meta charset="utf-8"><style>'
            "body{font-family:'DejaVu Sans',Arial,sans-serif;font-size:14px;margin:10px;background:#fff}"
            "table{border-collapse:collapse}th,td{padding:3px 8px;border-bottom:1px solid #ddd}"
            ".stamp{margin-top:8px;text-align:right;color:#b2182b;font-style:italic;font-size:12px}"
            f'</style></head><body><div style="display:inline-block">{body}'
            f'<div class="stamp">{html.escape(STAMP)}</div></div></body></html>'
        )
        path = self.out / name
        with tempfile.TemporaryDirectory() as tmp:
            source, shot = Path(tmp) / "table.html", Path(tmp) / "shot.png"
            source.write_text(page, encoding="utf-8")
            command = [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--window-size={HTML_WIDTH},{height}",
                f"--screenshot={shot}",
                source.as_uri(),
            ]
            try:
                subprocess.run(command, capture_output=True, timeout=120, check=True)
            except (subprocess.SubprocessError, OSError) as error:
                print(f"    skipped {name}: Chromium failed ({type(error).__name__}: {error})")
                return
            if not shot.exists():
                print(f"    skipped {name}: Chromium wrote no screenshot")
                return
            crop_to_content(shot, path)
        if path.stat().st_size > MAX_BYTES:
            to_palette(path)
        self.report(path)

    def report(self, path: Path) -> None:
        self.made.append(path)
        print(f"    {path.name}: {path.stat().st_size / 1024:.0f} kB")


def to_palette(path: Path) -> None:
    """Rewrite a PNG in 256 colours, dithered (Floyd-Steinberg): without dithering a colorbar's
    ramp falls into visible steps, as if the key were discrete. About a third of the bytes of a
    figure of photographs."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
    palette = rgb.quantize(256, method=Image.Quantize.FASTOCTREE)
    rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)


def crop_to_content(source: Path, target: Path, margin: int = 10) -> None:
    """Copy a screenshot without the white space around the page's content."""
    from PIL import Image, ImageChops

    with Image.open(source) as shot:
        rgb = shot.convert("RGB")
    box = ImageChops.difference(rgb, Image.new("RGB", rgb.size, "white")).getbbox()
    if box is None:
        raise RuntimeError(f"the screenshot {source} is blank")
    left, top, right, bottom = box
    if bottom + margin >= rgb.height:
        print(f"    warning: {target.name} may be cut at the bottom: raise its window height")
    width, height = rgb.size
    box = (
        max(0, left - margin),
        max(0, top - margin),
        min(width, right + margin),
        min(height, bottom + margin),
    )
    rgb = rgb.crop(box)
    rgb.save(target, optimize=True)


# ----------------------------------------------------------------------------------- figures
def heatmap(s: Session) -> None:
    itm, cos = s.model.scores(s.features, TEXTS)
    s.save(itm.with_true_pairs(TRUE_PAIRS).plot().figure_, "heatmap_itm.png")
    s.save(cos.plot(highlight=TRUE_PAIRS, sort="both").figure_, "heatmap_cosine_sorted.png")


def ranking(s: Session) -> None:
    table = s.model.rank(s.features[:1], TEXTS)
    s.save_html(blipviz.style_ranking(table).to_html(), "ranking_table.png", height=560)


def feature_space(s: Session) -> None:
    photos = sample_images(MAP_PHOTOS)
    both = [
        s.model.encode_images(photos.images, labels=photos.names),
        s.model.encode_texts(CAPTIONS),
    ]
    for layout in LAYOUTS:
        s.save(blipviz.feature_space_map(both, layout=layout).plot().figure_, f"feature_space_{layout}.png")
    gallery = sample_images(list(MAP_300_SUBJECTS))
    subjects = [name for name in MAP_300_SUBJECTS for _ in MAP_300_SETTINGS] + ["none"]
    many = [
        s.model.encode_images(gallery.images, labels=gallery.names),
        s.model.encode_texts(MAP_300_CAPTIONS),
    ]
    groups = gallery.names + subjects
    s.save(blipviz.feature_space_map(many, labels=groups).plot().figure_, "feature_space_300.png")


def attention(s: Session) -> None:
    astronaut = s.photos.images[0]
    att = s.model.cross_attention(s.features[:1], ATTENTION_TEXT)  # the ViT states of the heatmap
    s.save(att.overlay(astronaut).figure_, "attention_overlay.png")
    s.save(att.overlay(astronaut, scale="per-token").figure_, "attention_overlay_per_token.png")
    s.save(att.plot().figure_, "attention_maps.png")
    s.save(att.plot_heads().figure_, "attention_heads.png")
    s.save(s.model.gradcam(s.features[:1], ATTENTION_TEXT).overlay(astronaut).figure_, "gradcam_overlay.png")


def explanations(s: Session) -> None:
    astronaut = s.photos.images[0]
    # the five methods of one pair side by side; their explanations are the overlays' too (the
    # same maps as model.explain(astronaut, ATTENTION_TEXT, method, **options): occlusion once)
    comparison = blipviz.compare_explanations(
        s.model, astronaut, ATTENTION_TEXT, options={"occlusion": {"window": 2, "stride": 2}}
    )
    s.save(comparison.figure_, "explanation_comparison.png")
    for method in ("relevancy", "rollout", "occlusion"):
        s.save(comparison.explanations_[method].overlay().figure_, f"explanation_{method}.png")
    gradcam = comparison.explanations_["gradcam"]
    s.save(gradcam.overlay(tokens="[match]", signed=True).figure_, "explanation_gradcam_signed.png")
    evaluation = blipviz.evaluate_explanations(
        s.model,
        s.photos.images[:2],
        [TEXTS[0], TEXTS[2]],  # the true descriptions of the astronaut and of Grace Hopper
        methods=("attention", "gradcam", "relevancy", "rollout"),
        steps=10,
    )
    s.save(evaluation.plot().figure_, "explanation_curves.png")


def zero_shot(s: Session) -> None:
    clf = blipviz.ZeroShotClassifier(s.model, ZERO_SHOT_LABELS, template=ZERO_SHOT_TEMPLATE)
    photos = sample_images(list(ZERO_SHOT_PHOTOS))
    disp = clf.plot_top_k(photos.images[0], k=6, image_label="chelsea", true_label="cat")
    s.save(disp.figure_, "zero_shot_top_k.png")
    evaluation = blipviz.evaluate_zero_shot(clf, photos.images, list(ZERO_SHOT_PHOTOS.values()))
    s.save(evaluation.plot().figure_, "zero_shot_confusion.png")


def retrieval(s: Session) -> None:
    photos = sample_images(list(RETRIEVAL_CAPTIONS))
    captions = [c for name in photos.names for c in RETRIEVAL_CAPTIONS[name]]
    text_image = [i for i, name in enumerate(photos.names) for _ in RETRIEVAL_CAPTIONS[name]]
    evaluation = blipviz.evaluate_retrieval(
        s.model,
        photos.images,
        captions,
        text_image=text_image,
        k_test=8,
        labels=photos.names,
        benchmark="8 sample photographs",
    )
    s.save(evaluation.plot().figure_, "retrieval_recall.png")
    s.save_html(evaluation.failures("t2i", n=5).to_html(), "retrieval_failures_t2i.png", height=1100)


def net_information(s: Session) -> None:
    table = blipviz.net_information("ViT-B/16").style("parts")
    s.save_html(table.to_html(), "net_information_parts.png", height=400)


_ITM = "itm, cos = model.scores(feats, TEXTS)"
_MAP = (
    "g6 = sample_images(MAP_PHOTOS); "
    "both = [model.encode_images(g6.images, labels=g6.names), model.encode_texts(CAPTIONS)]; "
)
_CLF = (
    "z = sample_images(list(ZERO_SHOT_PHOTOS)); "
    'clf = blipviz.ZeroShotClassifier(model, ZERO_SHOT_LABELS, template="a photo of a {}")'
)
_RETRIEVAL = (
    "r = sample_images(list(RETRIEVAL_CAPTIONS)); "
    "captions = [c for name in r.names for c in RETRIEVAL_CAPTIONS[name]]; "
    "text_image = [i for i, name in enumerate(r.names) for _ in RETRIEVAL_CAPTIONS[name]]; "
    "ev = blipviz.evaluate_retrieval(model, r.images, captions, text_image=text_image, k_test=8, "
    'labels=r.names, benchmark="8 sample photographs")'
)

_FEATURE_SPACE_ENTRIES = [
    Entry(
        f"feature_space_{layout}.png",
        {
            "per-modality": "UMAP map of six photographs (thumbnails) and eight captions (callouts), "
            "each modality centred on its own mean first (the default).",
            "joint": "The same embeddings mapped as they are: the modality gap shows.",
            "side-by-side": "The per-modality coordinates in two panels, images and texts, on shared axes.",
        }[layout],
        f'{_MAP}blipviz.feature_space_map(both, layout="{layout}").plot()',
    )
    for layout in LAYOUTS
]
_FEATURE_SPACE_ENTRIES.append(
    Entry(
        "feature_space_300.png",
        "The design target: 300 items, the 13 photographs of sample_images and 287 captions (22 "
        "settings of each photograph's subject), coloured by subject. The labels that fit are drawn, "
        "each at or joined to its own point, chosen for coverage (outliers and every region first); "
        "the note in a corner counts them. FeatureSpaceExplorer shows every item by hover and selection.",
        "g13 = sample_images(list(MAP_300_SUBJECTS)); "
        "many = [model.encode_images(g13.images, labels=g13.names), model.encode_texts(MAP_300_CAPTIONS)]; "
        "blipviz.feature_space_map(many, labels=g13.names + SUBJECT_OF_EACH_CAPTION).plot()",
    )
)

FIGURES: dict[str, tuple[Callable[[Session], None], tuple[Entry, ...]]] = {
    "heatmap": (
        heatmap,
        (
            Entry(
                "heatmap_itm.png",
                "ITM match probabilities of five photographs (thumbnails as columns) against a true "
                "description and a hard negative of each (rows), true pairs outlined.",
                f"{_ITM}; itm.with_true_pairs(TRUE_PAIRS).plot()",
            ),
            Entry(
                "heatmap_cosine_sorted.png",
                "The cosine similarities of the same pairs, rows and columns sorted by their mean, "
                "true pairs outlined.",
                f'{_ITM}; cos.plot(highlight=TRUE_PAIRS, sort="both")',
            ),
        ),
    ),
    "ranking": (
        ranking,
        (
            Entry(
                "ranking_table.png",
                "The ten descriptions ranked for the astronaut by ITM probability, with bars of both scores "
                "(the notebook's HTML table, photographed with headless Chromium).",
                "blipviz.style_ranking(model.rank(feats[:1], TEXTS))  # how Jupyter shows model.rank(...)",
            ),
        ),
    ),
    "feature_space": (feature_space, tuple(_FEATURE_SPACE_ENTRIES)),
    "attention": (
        attention,
        (
            Entry(
                "attention_overlay.png",
                "Cross-attention of each text token on the photograph at the middle layer, heads averaged, "
                "on one shared colour scale.",
                "att = model.cross_attention(feats[:1], T); att.overlay(g.images[0])",
            ),
            Entry(
                "attention_overlay_per_token.png",
                "The same overlays, each token on its own colour scale.",
                'att.overlay(g.images[0], scale="per-token")',
            ),
            Entry(
                "attention_maps.png",
                "The same maps as matrices on the 24 x 24 patch grid, with a colorbar.",
                "att.plot()",
            ),
            Entry(
                "attention_heads.png",
                "One layer's raw cross-attention per head on the 24 x 24 patch grid: a row of head "
                "maps per text token, the ViT's [CLS] apart; at most 12 inches tall (page= beyond).",
                "att.plot_heads()",
            ),
            Entry(
                "gradcam_overlay.png",
                "GradCAM of the ITM match logit at the middle layer, the match map (the mean of the "
                "words' maps) and each token's, on the photograph.",
                "model.gradcam(feats[:1], T).overlay(g.images[0])",
            ),
        ),
    ),
    "explanations": (
        explanations,
        (
            Entry(
                "explanation_comparison.png",
                "The five methods' maps of the match decision for one pair side by side, each on its own "
                "scale with its colorbar; occlusion signed (blue: blurring the patch raised the score) on "
                "a diverging key centred at zero. With evaluate=True each panel's title adds its deletion "
                "and insertion AUC.",
                'blipviz.compare_explanations(model, g.images[0], T, options={"occlusion": '
                '{"window": 2, "stride": 2}})',
            ),
            Entry(
                "explanation_gradcam_signed.png",
                "GradCAM's match map before its gradient is clipped at 0: where attending to a patch "
                "lowers the match logit shows on the key's other side.",
                'model.explain(g.images[0], T, "gradcam").overlay(tokens="[match]", signed=True)',
            ),
            Entry(
                "explanation_relevancy.png",
                "Relevancy (Chefer et al.) of the ITM decision: the match map, then each token's, "
                "on the photograph.",
                'model.explain(g.images[0], T, "relevancy").overlay()',
            ),
            Entry(
                "explanation_rollout.png",
                "Attention rollout of the same decision.",
                'model.explain(g.images[0], T, "rollout").overlay()',
            ),
            Entry(
                "explanation_occlusion.png",
                "Occlusion: the drop of the ITM match logit when 2 x 2 patch windows are blurred out, "
                "signed (a rise of the score below zero) on a diverging key centred at zero.",
                'model.explain(g.images[0], T, "occlusion", window=2, stride=2).overlay()',
            ),
            Entry(
                "explanation_curves.png",
                "Deletion and insertion curves of the match probability for four methods and a random order, "
                "over two image-text pairs.",
                "blipviz.evaluate_explanations(model, g.images[:2], [TEXTS[0], TEXTS[2]], "
                'methods=("attention", "gradcam", "relevancy", "rollout"), steps=10).plot()',
            ),
        ),
    ),
    "zero_shot": (
        zero_shot,
        (
            Entry(
                "zero_shot_top_k.png",
                "Zero-shot classification of Chelsea the cat: the photograph beside its six classes, "
                "true class marked.",
                f'{_CLF}; clf.plot_top_k(z.images[0], k=6, image_label="chelsea", true_label="cat")',
            ),
            Entry(
                "zero_shot_confusion.png",
                "The confusion matrix of four labelled photographs (cat, astronaut, coffee, rocket).",
                "blipviz.evaluate_zero_shot(clf, z.images, list(ZERO_SHOT_PHOTOS.values())).plot()",
            ),
        ),
    ),
    "retrieval": (
        retrieval,
        (
            Entry(
                "retrieval_recall.png",
                "Recall@K curves of text and image retrieval with BLIP's protocol: eight photographs, "
                "two captions each.",
                f"{_RETRIEVAL}; ev.plot()",
            ),
            Entry(
                "retrieval_failures_t2i.png",
                "The five worst caption queries: the true photograph and those ranked above it "
                "(HTML, photographed).",
                'ev.failures("t2i", n=5)  # an HTML table in Jupyter',
            ),
        ),
    ),
    "net_information": (
        net_information,
        (
            Entry(
                "net_information_parts.png",
                "Element counts of ViT-B/16's parts (shared weights counted in each), built without weights "
                "(HTML, photographed).",
                'blipviz.net_information("ViT-B/16").style("parts")',
            ),
        ),
    ),
}


HEADINGS = {
    "heatmap": "Score heatmaps",
    "ranking": "Ranking table",
    "feature_space": "Feature space",
    "attention": "Cross-attention and GradCAM",
    "explanations": "Explanations",
    "zero_shot": "Zero-shot classification",
    "retrieval": "Retrieval",
    "net_information": "Net information",
}


def write_readme(out: Path, quick: bool) -> Path:
    """The gallery page: every PNG of ``FIGURES`` present in ``out``, in order, with its line and call."""
    if quick:
        net = [
            'drawn by [`docs/gallery.py`](../gallery.py) with `blipviz.load_model("tiny-random")`, a smoke',
            "run: the tiny net with random weights, not BLIP's geometry,",
        ]
    else:
        net = [
            "drawn by [`docs/gallery.py`](../gallery.py) with `blipviz.load_model(pretrained=False)`:",
            "BLIP's full ViT-B/16 geometry with informative random weights (seeded, `torch.manual_seed(0)`),",
        ]
    lines = [
        "# Figure gallery",
        "",
        "Every kind of blipviz figure,",
        *net,
        "on the photographs of `blipviz.datasets.sample_images`. The sizes, grids, labels and layouts",
        "are those of the net; **the numbers and pictures mean nothing**, so each figure is stamped",
        f'"{STAMP}". With `blipviz.load_model()` the same calls draw BLIP\'s scores.',
        "",
        "Regenerate (10 to 20 minutes on 2 CPU cores: occlusion and the deletion / insertion curves",
        "are most of it; `--quick` draws every kind on the tiny net in about a minute):",
        "",
        "```bash",
        "PYTHONPATH=. .venv/bin/python docs/gallery.py              # all figures, into docs/gallery",
        "PYTHONPATH=. .venv/bin/python docs/gallery.py --only attention",
        "```",
        "",
        "Names in capitals are the constants at the top of `docs/gallery.py` (`TEXTS`: a true description",
        "and a hard negative of each photograph; `TRUE_PAIRS = [(i, 2 * i) for i in range(5)]`). Every",
        "call below follows",
        "",
        "```python",
        "import torch",
        "import blipviz",
        "from blipviz.datasets import sample_images",
        "",
        "torch.manual_seed(0)",
        "model = blipviz.load_model(pretrained=False)",
        "g = sample_images(PHOTOS)  # astronaut, grace_hopper, rocket, coffee, motorcycle",
        "feats = model.encode_images(g.images, labels=g.names)  # each photograph through the ViT once",
        f'T = "{ATTENTION_TEXT}"',
        "```",
        "",
    ]
    for group, (_, entries) in FIGURES.items():
        present = [e for e in entries if (out / e.file).exists()]
        if not present:
            continue
        lines += [f"## {HEADINGS[group]}", ""]
        for e in present:
            lines += [f"### `{e.file}`", "", e.what, "", f"`{e.call}`", "", f"![{e.file}]({e.file})", ""]
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", nargs="+", choices=list(FIGURES), metavar="NAME", help=f"any of {', '.join(FIGURES)}"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "gallery")
    parser.add_argument("--quick", action="store_true", help='the tiny net ("tiny-random"): a smoke run')
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    session = Session(args.out, args.quick)
    names = [n for n in FIGURES if args.only is None or n in args.only]
    start = time.perf_counter()
    net = "tiny-random" if args.quick else "ViT-B/16, pretrained=False"
    print(f"net: {net}; output: {args.out}", flush=True)
    for number, name in enumerate(names, 1):
        began = time.perf_counter()
        print(f"[{number}/{len(names)}] {name}", flush=True)
        FIGURES[name][0](session)
        print(f"    done in {time.perf_counter() - began:.1f} s", flush=True)
    readme = write_readme(args.out, args.quick)
    print(f"{len(session.made)} PNGs and {readme} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
