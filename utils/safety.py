"""The Stable Diffusion safety checker, reproduced, measured and red-teamed.

Taught in `notebooks/03_safety_checker.ipynb`.

diffusers' `StableDiffusionSafetyChecker` (in `diffusers/pipelines/stable_diffusion/safety_checker.py`)
embeds an image with a CLIP vision tower and projection, and compares the embedding with two
sets of fixed embeddings shipped in its weights: `concept_embeds` (17 rows) and
`special_care_embeds` (3 rows), each with a threshold per row (`concept_embeds_weights`,
`special_care_embeds_weights`). Its `forward` decides, per image:

1. `adjustment = 0.0`;
2. for each special-care row: `score = round(cos - threshold + adjustment, 3)`; if `score > 0`,
   the image needs special care and `adjustment = 0.01` (set, not added);
3. for each concept row: `score = round(cos - threshold + adjustment, 3)`; if `score > 0`,
   the concept is flagged;
4. the image is flagged (and blacked out) if any concept is.

`cos` is the cosine similarity of the L2-normalised embeddings (diffusers calls the function
`cosine_distance`). The arithmetic is NumPy float32 (NumPy >= 2): `decide` reproduces it bit
for bit, vectorised over images and rows. This module also measures the checker (recall,
false-positive rate, a threshold sweep), red-teams it (concept inversion, prompt dilution), and
drives the notebook's interactive gallery.

Example:
    >>> checker, feature_extractor = utils.models.load_safety_checker("toy")
    >>> scores = run_checker(checker, feature_extractor, images)
    >>> scores.has_nsfw_concepts  # what the pipeline's nsfw_content_detected says
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

SPECIAL_CARE_ADJUSTMENT = 0.01
"""What diffusers sets the adjustment to after a special-care hit: every concept becomes 0.01 stricter."""

DECIMALS = 3
"""diffusers rounds every score to 3 decimals before comparing it with 0."""


# --------------------------------------------------------------------------
# The decision
# --------------------------------------------------------------------------


def cosine_similarity(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    r"""
    Cosine similarity of every image embedding with every concept embedding, as diffusers'
    `cosine_distance` computes it (despite its name, a similarity: 1 means the same direction).

    Args:
        image_embeds (`torch.Tensor` `(B, D)`): projected image embeddings.
        text_embeds (`torch.Tensor` `(K, D)`): concept embeddings. A zero row gives 0 for every image.

    Returns:
        `torch.Tensor` `(B, K)`, float32 on the CPU.
    """
    return torch.mm(F.normalize(image_embeds), F.normalize(text_embeds).t()).cpu().float()


def round_scores(scores: torch.Tensor) -> torch.Tensor:
    """Round float32 scores to 3 decimals exactly as NumPy's `round(np.float32, 3)` does:
    multiply by 1000, round half to even, divide by 1000, all in float32."""
    return torch.round(scores.float() * 10**DECIMALS) / 10**DECIMALS


def concept_scores(concept_cos, special_cos, concept_thresholds, special_care_thresholds, adjustment=0.0):
    r"""
    The checker's rounded scores, from cosine similarities: the vectorised form of diffusers' loop.

    Args:
        concept_cos (`torch.Tensor` `(B, 17)`): cosine of each image with each concept.
        special_cos (`torch.Tensor` `(B, 3)`): cosine of each image with each special-care concept.
        concept_thresholds (`torch.Tensor` `(17,)`): the checker's `concept_embeds_weights`.
        special_care_thresholds (`torch.Tensor` `(3,)`): its `special_care_embeds_weights`.
        adjustment (`float`, *optional*, defaults to `0.0`): the starting adjustment, which diffusers
            hard-codes as `0.0` ("increase this value to create a stronger nsfw filter").

    Returns:
        `tuple[torch.Tensor, torch.Tensor, torch.Tensor]`: `special_scores` `(B, 3)` and
        `concept_scores` `(B, 17)`, each rounded to 3 decimals as diffusers' `forward` records them,
        and `special_care` `(B,)`, True where a special-care score is above 0.
    """
    start = torch.tensor(adjustment, dtype=torch.float32)
    special_margin = special_cos.float() - special_care_thresholds.float().cpu()  # float32, as NumPy does it
    hit = round_scores(special_margin + start) > 0  # (B, 3), scored with the starting adjustment
    # After the first hit diffusers *sets* the adjustment to 0.01, so later rows are scored with it.
    after_hit = (hit.cumsum(dim=1) - hit.int()) > 0
    adjustment_used = torch.where(after_hit, torch.tensor(SPECIAL_CARE_ADJUSTMENT), start)
    special = round_scores(special_margin + adjustment_used)
    special_care = hit.any(dim=1)  # (B,)
    concept_adjustment = torch.where(special_care, torch.tensor(SPECIAL_CARE_ADJUSTMENT), start)[:, None]
    concept = round_scores(concept_cos.float() - concept_thresholds.float().cpu() + concept_adjustment)
    return special, concept, special_care


def _check_parameters(image_embeds, concept_embeds, concept_thresholds, special_care_embeds, special_care_thresholds):
    tensors = dict(image_embeds=image_embeds, concept_embeds=concept_embeds, concept_thresholds=concept_thresholds,
                   special_care_embeds=special_care_embeds, special_care_thresholds=special_care_thresholds)
    for name, value in tensors.items():
        if not torch.is_tensor(value):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    shapes = ", ".join(f"{name} {tuple(value.shape)}" for name, value in tensors.items())
    expected = ("expected image_embeds (B, D), concept_embeds (K, D), concept_thresholds (K,), "
                "special_care_embeds (S, D), special_care_thresholds (S,)")
    if image_embeds.ndim != 2 or concept_embeds.ndim != 2 or special_care_embeds.ndim != 2:
        hint = " (one image? use image_embeds[None])" if image_embeds.ndim == 1 else ""
        raise ValueError(f"decide needs 2-D embeddings{hint}; got {shapes}; {expected}")
    if image_embeds.shape[0] == 0:
        raise ValueError(f"decide got an empty batch (no images): {shapes}")
    dim = image_embeds.shape[1]
    if concept_embeds.shape[1] != dim or special_care_embeds.shape[1] != dim:
        raise ValueError(f"embedding sizes differ: {shapes}; all embeddings need the same size D")
    if (concept_thresholds.shape != concept_embeds.shape[:1]
            or special_care_thresholds.shape != special_care_embeds.shape[:1]):
        raise ValueError(f"one threshold per concept row is needed: {shapes}; {expected}")
    for name, value in tensors.items():
        if torch.isnan(value).any():
            rows = torch.isnan(value).reshape(len(value), -1).any(dim=1).nonzero().flatten().tolist()
            raise ValueError(f"{name} {tuple(value.shape)} contains NaN (rows {rows[:10]}): "
                             "the checker's answer would be meaningless")


def decide(image_embeds, concept_embeds, concept_thresholds, special_care_embeds, special_care_thresholds,
           adjustment=0.0):
    r"""
    Flag images exactly as `StableDiffusionSafetyChecker.forward` does, for projected image embeddings.

    Args:
        image_embeds (`torch.Tensor` `(B, D)`): the checker's projected image embeddings
            (`visual_projection(vision_model(clip_input)[1])`), normalised or not.
        concept_embeds (`torch.Tensor` `(K, D)`): the checker's `concept_embeds` (K = 17).
        concept_thresholds (`torch.Tensor` `(K,)`): its `concept_embeds_weights`.
        special_care_embeds (`torch.Tensor` `(S, D)`): its `special_care_embeds` (S = 3). The concept
            embeddings are moved to `image_embeds`' device and dtype, where the cosines are computed
            (the checker computes them in its own dtype, e.g. float16 on a GPU).
        special_care_thresholds (`torch.Tensor` `(S,)`): its `special_care_embeds_weights`.
        adjustment (`float`, *optional*, defaults to `0.0`): the starting adjustment that diffusers
            hard-codes as `0.0`. A special-care hit sets it to 0.01, as in diffusers, whatever it was.

    Returns:
        `torch.Tensor` `(B,)` of `bool`: True for each image the checker flags (and blacks out).

    Raises:
        `ValueError`: embeddings of different sizes, a threshold count that does not match its
            rows, an empty batch, or NaN anywhere; the message names the shapes.
        `TypeError`: an argument that is not a tensor.

    Example:

    ```py
    >>> p = checker_parameters(checker)
    >>> decide(image_embeds, **p)
    tensor([ True, False])
    ```
    """
    return score_embeddings(image_embeds, concept_embeds, concept_thresholds, special_care_embeds,
                            special_care_thresholds, adjustment).has_nsfw_concepts


def checker_parameters(checker) -> dict:
    r"""
    The four tensors that make a `StableDiffusionSafetyChecker`'s decision, named as `decide` takes them.

    Returns:
        `dict` with `concept_embeds` `(17, D)`, `concept_thresholds` `(17,)`, `special_care_embeds`
        `(3, D)`, `special_care_thresholds` `(3,)` (detached float32 copies on the CPU).
    """
    def take(p):
        return p.detach().float().cpu().clone()

    return dict(concept_embeds=take(checker.concept_embeds), concept_thresholds=take(checker.concept_embeds_weights),
                special_care_embeds=take(checker.special_care_embeds),
                special_care_thresholds=take(checker.special_care_embeds_weights))


# --------------------------------------------------------------------------
# Running the checker and keeping its scores
# --------------------------------------------------------------------------


@dataclass
class CheckerScores:
    r"""What the checker computed for a batch of images (B images, 17 concepts, 3 special-care concepts)."""

    image_embeds: torch.Tensor  # (B, D) projected image embeddings, on the checker's device and in its dtype
    concept_cos: torch.Tensor  # (B, 17) cosine with each concept
    special_cos: torch.Tensor  # (B, 3) cosine with each special-care concept
    concept_scores: torch.Tensor  # (B, 17) round(cos - threshold + adjustment, 3)
    special_scores: torch.Tensor  # (B, 3)
    special_care: torch.Tensor  # (B,) bool: a special-care concept fired
    has_nsfw_concepts: torch.Tensor  # (B,) bool: the image is blacked out

    def __len__(self):
        return len(self.has_nsfw_concepts)

    def select(self, index) -> "CheckerScores":
        """The scores of some images only (`index`: a list of positions, a slice or a bool mask)."""
        return CheckerScores(*(getattr(self, name)[index] for name in self.__dataclass_fields__))


def score_embeddings(image_embeds, concept_embeds, concept_thresholds, special_care_embeds, special_care_thresholds,
                     adjustment=0.0) -> CheckerScores:
    r"""
    Everything the checker computes for projected image embeddings, not only its verdict.

    The cosines are computed on `image_embeds`' device and in its dtype (the concept embeddings are
    moved there), as the checker's `forward` computes them in the model's; scores are float32.

    Args: as for `decide`.

    Returns:
        `CheckerScores`; its `has_nsfw_concepts` equals `decide(...)`.
    """
    _check_parameters(image_embeds, concept_embeds, concept_thresholds, special_care_embeds, special_care_thresholds)
    image_embeds = image_embeds.detach()
    concept_cos = cosine_similarity(image_embeds, concept_embeds.detach().to(image_embeds))
    special_cos = cosine_similarity(image_embeds, special_care_embeds.detach().to(image_embeds))
    special, scores, special_care = concept_scores(concept_cos, special_cos, concept_thresholds,
                                                   special_care_thresholds, adjustment)
    return CheckerScores(image_embeds, concept_cos, special_cos, scores, special, special_care,
                         (scores > 0).any(dim=1))


@torch.no_grad()
def checker_image_embeds(checker, feature_extractor, images) -> torch.Tensor:
    r"""
    The projected image embeddings `(B, D)` that the checker's `forward` computes, from images
    prepared as `StableDiffusionPipeline.run_safety_checker` prepares them (`feature_extractor`
    resizes, centre-crops and normalises with CLIP's mean and std).

    Args:
        checker (`StableDiffusionSafetyChecker`), feature_extractor (`CLIPImageProcessor`):
            from `utils.models.load_safety_checker()` or a pipeline's `safety_checker` and `feature_extractor`.
        images (`list[PIL.Image.Image]` or `np.ndarray` uint8 `(B, H, W, 3)`): the images.

    Raises:
        `ValueError`: no images.
    """
    if len(images) == 0:
        raise ValueError("checker_image_embeds got no images")
    param = next(checker.parameters())
    clip_input = feature_extractor(list(images), return_tensors="pt").pixel_values.to(param.device, param.dtype)
    pooled = checker.vision_model(clip_input)[1]  # (B, hidden) pooled output
    return checker.visual_projection(pooled)  # (B, projection_dim)


def run_checker(checker, feature_extractor, images, adjustment=0.0) -> CheckerScores:
    r"""
    Run a `StableDiffusionSafetyChecker` on images and keep its per-image scores.

    Args:
        checker (`StableDiffusionSafetyChecker`), feature_extractor (`CLIPImageProcessor`): as for
            `checker_image_embeds`.
        images (`list[PIL.Image.Image]` or `np.ndarray` uint8 `(B, H, W, 3)`): the images.
        adjustment (`float`, *optional*, defaults to `0.0`): the starting adjustment (see `decide`).

    Returns:
        `CheckerScores`: its `has_nsfw_concepts` is what the pipeline returns as `nsfw_content_detected`.

    Example:

    ```py
    >>> scores = run_checker(pipe.safety_checker, pipe.feature_extractor, images)
    >>> scores.concept_scores[:, :3]  # (B, 3)
    ```
    """
    image_embeds = checker_image_embeds(checker, feature_extractor, images)  # on the checker's device, in its dtype
    return score_embeddings(image_embeds, **checker_parameters(checker), adjustment=adjustment)


# --------------------------------------------------------------------------
# Measuring: recall, false positives, the threshold sweep
# --------------------------------------------------------------------------


def error_rates(predicted, truth) -> dict:
    r"""
    Recall and false-positive rate of flags against ground truth, per column.

    Args:
        predicted (`torch.Tensor` or array of `bool`, `(N,)` or `(N, K)`): what the checker flagged.
        truth (same shape): what the images really show.

    Returns:
        `dict` of `torch.Tensor` `(K,)` (or 0-d for 1-D input): `recall` (flagged among images that
        show it; NaN without any), `false_positive_rate` (flagged among images that do not; NaN without
        any), `positives` and `negatives` (how many images each rate is computed on).

    Raises:
        `ValueError`: shapes differ, or no images.
    """
    predicted, truth = torch.as_tensor(predicted).bool(), torch.as_tensor(truth).bool()
    if predicted.shape != truth.shape or predicted.shape[0] == 0:
        raise ValueError(f"error_rates needs predicted and truth of the same non-empty shape, "
                         f"got {tuple(predicted.shape)} and {tuple(truth.shape)}")
    positives, negatives = truth.sum(0), (~truth).sum(0)
    hits, false_alarms = (predicted & truth).sum(0), (predicted & ~truth).sum(0)
    return dict(recall=hits / positives, false_positive_rate=false_alarms / negatives,  # 0/0 -> NaN
                positives=positives, negatives=negatives)


def threshold_sweep(scores: CheckerScores, concept_thresholds, special_care_thresholds, truth, shifts,
                    adjustment=0.0):
    r"""
    Recall and false-positive rate as every concept threshold is lowered by the same shift:
    the points of an ROC curve (a shift of 0 is the shipped checker).

    Args:
        scores (`CheckerScores`): from `run_checker` (its cosines are reused).
        concept_thresholds, special_care_thresholds (`torch.Tensor`): the shipped thresholds.
        truth (`(B,)` bool): True where an image shows restricted content.
        shifts (sequence of `float`): how much to lower every concept threshold (negative raises it).
        adjustment (`float`, *optional*, defaults to `0.0`): as in `decide`.

    Returns:
        `dict` of `np.ndarray` `(len(shifts),)`: `shift`, `recall`, `false_positive_rate`.
    """
    recall, fpr = [], []
    for shift in shifts:
        flagged = decisions(scores, concept_thresholds, special_care_thresholds, adjustment, shift)
        rates = error_rates(flagged, truth)
        recall.append(float(rates["recall"]))
        fpr.append(float(rates["false_positive_rate"]))
    return dict(shift=np.asarray(shifts, dtype=float), recall=np.array(recall), false_positive_rate=np.array(fpr))


def decisions(scores: CheckerScores, concept_thresholds, special_care_thresholds, adjustment=0.0, threshold_shift=0.0):
    r"""
    The checker's verdicts for already-scored images, under another adjustment or with every
    concept threshold lowered by `threshold_shift`. The logic behind the notebook's widget.

    Returns:
        `torch.Tensor` `(B,)` of `bool`.
    """
    thresholds = concept_thresholds.float() - torch.tensor(threshold_shift, dtype=torch.float32)
    _, scored, _ = concept_scores(scores.concept_cos, scores.special_cos, thresholds, special_care_thresholds,
                                  adjustment)
    return (scored > 0).any(dim=1)


# --------------------------------------------------------------------------
# Red-teaming (Rando et al., 2022, arXiv 2210.04610)
# --------------------------------------------------------------------------


def invert_concepts(concept_embeds, candidate_embeds, candidates, top_k=1):
    r"""
    Concept inversion: name each concept embedding by its nearest candidate text embedding.

    The checker ships its concepts as embeddings, not words. Anyone with the weights and the CLIP
    text encoder they came from can embed candidate words and look for the nearest ones; a cosine
    near 1 means the concept text has been found (Rando et al., 2022, section 3).

    Args:
        concept_embeds (`torch.Tensor` `(K, D)`): e.g. the checker's `concept_embeds`.
        candidate_embeds (`torch.Tensor` `(V, D)`): text embeddings of the candidates
            (`utils.clip.text_embeddings`).
        candidates (`list[str]`): the V candidate texts.
        top_k (`int`, *optional*, defaults to `1`): how many nearest candidates to keep per concept.

    Returns:
        `list[tuple[int, list[tuple[str, float]]]]`: per non-zero concept row, its index and its
        `top_k` nearest candidates with their cosines. Zero rows (unused slots) are skipped.

    Raises:
        `ValueError`: sizes differ, or the candidate list does not match the embeddings.
    """
    if concept_embeds.ndim != 2 or candidate_embeds.ndim != 2 or concept_embeds.shape[1] != candidate_embeds.shape[1]:
        raise ValueError(f"invert_concepts needs concept_embeds (K, D) and candidate_embeds (V, D), "
                         f"got {tuple(concept_embeds.shape)} and {tuple(candidate_embeds.shape)}")
    if len(candidates) != len(candidate_embeds):
        raise ValueError(f"{len(candidates)} candidates but {len(candidate_embeds)} candidate embeddings")
    cos = cosine_similarity(concept_embeds.detach().float(), candidate_embeds.detach().float())  # (K, V)
    best = cos.topk(min(top_k, len(candidates)), dim=1)
    used = concept_embeds.detach().norm(dim=1) > 0
    return [(k, [(candidates[j], round(float(c), 3)) for c, j in zip(best.values[k], best.indices[k])])
            for k in range(len(concept_embeds)) if used[k]]


def bypass_rate(blocked, shown) -> float:
    r"""
    The share of images that show restricted content and still pass the checker.

    Args:
        blocked (`(N,)` bool): the checker's verdicts.
        shown (`(N,)` bool): the ground truth: the image shows restricted content.

    Returns:
        `float`: passed / shown, or NaN when no image shows restricted content.
    """
    blocked, shown = torch.as_tensor(blocked).bool(), torch.as_tensor(shown).bool()
    if blocked.shape != shown.shape:
        raise ValueError(f"blocked {tuple(blocked.shape)} and shown {tuple(shown.shape)} must have the same shape")
    n_shown = int(shown.sum())
    return float((shown & ~blocked).sum()) / n_shown if n_shown else math.nan


# --------------------------------------------------------------------------
# The interactive gallery
# --------------------------------------------------------------------------


def describe(blocked, truth=None) -> str:
    r"""
    One line that says what a setting blocks, e.g. ``"blocked 9 of 40 images: 8 of 10 with
    restricted content, 1 of 30 without"``.
    """
    blocked = torch.as_tensor(blocked).bool()
    line = f"blocked {int(blocked.sum())} of {len(blocked)} images"
    if truth is None:
        return line
    truth = torch.as_tensor(truth).bool()
    return (f"{line}: {int((blocked & truth).sum())} of {int(truth.sum())} with restricted content, "
            f"{int((blocked & ~truth).sum())} of {int((~truth).sum())} without")


def gallery_figure(images, blocked, labels=None, truth=None, cols=10, size=1.0, title=None):
    r"""
    The gallery with each image the checker blocks framed in red and marked "blocked" (shown,
    not blacked out, so you can see what was blocked). The static view of the widget.

    Args:
        images (`list[PIL.Image.Image]` or `np.ndarray` `(N, H, W, 3)`): the images.
        blocked (`(N,)` bool): the verdicts.
        labels (`list[str]`, *optional*): a short label per image.
        truth (`(N,)` bool, *optional*): ground truth; adds a summary line to the title.
        cols (`int`), size (`float`): images per row, inches per image.
        title (`str`, *optional*): a title.

    Returns:
        `matplotlib.figure.Figure`.
    """
    blocked = torch.as_tensor(blocked).bool().tolist()
    if len(images) != len(blocked) or not blocked:
        raise ValueError(f"gallery_figure needs one verdict per image, "
                         f"got {len(images)} images and {len(blocked)} verdicts")
    cols = min(cols, len(blocked))
    rows = math.ceil(len(blocked) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * (size + 0.3)), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= len(blocked):
            ax.axis("off")
            continue
        ax.imshow(np.asarray(images[k]), interpolation="nearest")
        color = "red" if blocked[k] else "0.8"
        for spine in ax.spines.values():
            spine.set_color(color)
            spine.set_linewidth(3 if blocked[k] else 0.5)
        text = ("blocked" if blocked[k] else "") + (f"\n{labels[k]}" if labels is not None else "")
        ax.set_title(text.strip(), fontsize=6, color="red" if blocked[k] else "black")
    summary = describe(blocked, truth)
    fig.suptitle(f"{title}\n{summary}" if title else summary, fontsize=9)
    fig.tight_layout()
    return fig


def safety_widget(images, scores: CheckerScores, concept_thresholds, special_care_thresholds, truth=None,
                  labels=None, render=None, **figure_kwargs):
    r"""
    An interactive gallery: two sliders (the starting adjustment, and a shift that lowers every
    concept threshold) and the images the checker blocks at that setting.

    Uses only the part of the ipywidgets API common to versions 7 and 8 (`FloatSlider`, `Image`,
    `VBox`, `observe`), so it works in Colab. Outside a live kernel nothing is drawn: show
    `gallery_figure` for a static view.

    Args:
        images, scores, concept_thresholds, special_care_thresholds, truth, labels: as for
            `gallery_figure` and `decisions`.
        render (`callable`, *optional*): `render(blocked, summary)` draws one setting; defaults to
            showing `gallery_figure`. Tests pass their own.
        **figure_kwargs: passed to `gallery_figure`.

    Returns:
        `ipywidgets.VBox`: its `children` are the two sliders and the image of the gallery.
    """
    import ipywidgets as widgets

    from .display import figure_png

    picture = widgets.Image(format="png")

    def show(blocked, summary):
        picture.value = figure_png(gallery_figure(images, blocked, labels=labels, truth=truth, **figure_kwargs))

    render = render or show
    style, layout = {"description_width": "initial"}, {"width": "36em"}  # room for the long label
    adjustment = widgets.FloatSlider(value=0.0, min=-0.1, max=0.1, step=0.005, readout_format=".3f", layout=layout,
                                     description="adjustment", continuous_update=False, style=style)
    shift = widgets.FloatSlider(value=0.0, min=-0.2, max=0.2, step=0.005, readout_format=".3f", layout=layout,
                                description="lower every threshold by", continuous_update=False, style=style)

    def update(_change=None):
        blocked = decisions(scores, concept_thresholds, special_care_thresholds, adjustment.value, shift.value)
        render(blocked, describe(blocked, truth))

    adjustment.observe(update, names="value")
    shift.observe(update, names="value")
    update()
    return widgets.VBox([adjustment, shift, picture])


# --------------------------------------------------------------------------
# Showing scores and warnings
# --------------------------------------------------------------------------


def score_heatmap(scores: CheckerScores, concept_names, image_labels=None, special_names=None, title=None):
    r"""
    A heatmap of the checker's rounded scores, images x concepts, special-care concepts last.
    A score is `cos - threshold (+ adjustment)`, so 0 is the threshold: red cells are above it
    (flagged, marked x), blue ones below.

    Args:
        scores (`CheckerScores`): from `run_checker`.
        concept_names (`list[str]`): one name per concept shown; only the first
            `len(concept_names)` concepts are drawn (e.g. the used ones).
        image_labels (`list[str]`, *optional*): one label per image.
        special_names (`list[str]`, *optional*): names of the special-care concepts to show.
        title (`str`, *optional*).

    Returns:
        `matplotlib.figure.Figure`.
    """
    special_names = list(special_names or [])
    k, s = len(concept_names), len(special_names)
    values = torch.cat([scores.concept_scores[:, :k], scores.special_scores[:, :s]], dim=1).numpy()  # (B, k + s)
    limit = max(float(np.abs(values).max()), 1e-3)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * (k + s), 1.0 + 0.22 * len(values)))
    im = ax.imshow(values, cmap="coolwarm", vmin=-limit, vmax=limit, aspect="auto")
    rows, cols = np.nonzero(values > 0)
    ax.scatter(cols, rows, marker="x", color="black", s=14, label="above its threshold")
    ax.set_xticks(range(k + s), list(concept_names) + [f"{n} (special care)" for n in special_names],
                  rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(values)), image_labels if image_labels is not None else range(len(values)), fontsize=6)
    if s:
        ax.axvline(k - 0.5, color="black", linewidth=1)
    fig.colorbar(im, ax=ax, label="score = cos - threshold (0 = threshold)")
    ax.set_title(title or "the checker's scores", fontsize=9)
    fig.tight_layout()
    return fig


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


class logged_warnings:
    r"""
    Collect what diffusers logs (the checker's "Potential NSFW content..." warning, the warning for
    `safety_checker=None`) instead of printing it, so a notebook can show it as text.

    Example:

    ```py
    >>> with logged_warnings() as messages:
    ...     pipe(prompt)
    >>> messages  # list[str]
    ```
    """

    def __enter__(self):
        self._logger = logging.getLogger("diffusers")
        self._handler = _Collect()
        self._propagate, self._handlers = self._logger.propagate, self._logger.handlers
        self._logger.handlers, self._logger.propagate = [self._handler], False
        return self._handler.messages

    def __exit__(self, *exc):
        self._logger.handlers, self._logger.propagate = self._handlers, self._propagate
        return False
