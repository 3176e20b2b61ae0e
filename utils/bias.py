"""Bias analysis: measure the attribute distribution of a model's images, with honest uncertainty.

Taught in `notebooks/05_bias_analysis.ipynb`. Three groups of tools:

- **Metrics** of one distribution over K categories (DALL-Eval, Cho, Zala and Bansal, ICCV
  2023; Stable Bias, Luccioni et al., NeurIPS 2023): `normalized_entropy`, `kl_divergence`,
  `mad`. Each takes probabilities or counts (normalised for you) and returns a float.
- **Uncertainty**: `resampled_interval` (the bootstrap of any statistic, resampling the units
  that are independent: images, or prompts), `bootstrap_interval` (of category shares,
  resampling the images), `wilson_interval` (a share out
  of n, also right at 0% and 100%, where the bootstrap collapses) and `amplification` (how
  much a model exaggerates a share of its training data, with an interval).
- **Measurement**: `generate` (seeded images, batch-independent), `zero_shot_labels` (CLIP as
  the measuring instrument, `utils.clip.zero_shot`), `confusion_matrix`, `kmeans` (label-free
  clusters of image embeddings, after Stable Bias), and the two-prompt explorer
  (`compare_prompts`, `explorer_figure`, `explorer`, after the DiffusionBiasExplorer Space).

Example:
    >>> normalized_entropy([0.2, 0.2, 0.2, 0.2, 0.2])
    1.0
    >>> mad([1, 0, 0, 0])  # counts work too
    0.375
"""

from __future__ import annotations

import numpy as np

from . import clip, gpu, toyworld

# ---------------------------------------------------------------- metrics


def probabilities(p) -> np.ndarray:
    """`p` (probabilities or counts, 1-D) as a probability vector that sums to 1.

    Raises:
        `ValueError`: empty, not 1-D, not finite, negative, or all zero.
    """
    p = np.asarray(p, dtype=float)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"expected a non-empty 1-D vector of probabilities or counts, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"probabilities must be finite numbers, got {p.tolist()}")
    if np.any(p < 0):
        raise ValueError(f"probabilities and counts cannot be negative, got {p.tolist()}")
    if p.sum() == 0:
        raise ValueError("all entries are zero: there is no distribution to measure (no images counted?)")
    return p / p.sum()


def normalized_entropy(p) -> float:
    """Shannon entropy divided by its maximum, log K: 1 for a uniform distribution, 0 when one
    category takes everything. A measure of diversity.

    Args:
        p (array-like, K >= 2 entries): probabilities or counts.

    Returns:
        `float` in [0, 1].

    Raises:
        `ValueError`: fewer than two categories, or invalid input (see `probabilities`).

    Example:
        >>> normalized_entropy([0.5, 0.5, 0, 0])
        0.5
    """
    p = probabilities(p)
    if p.size < 2:
        raise ValueError("normalized_entropy needs at least two categories (log K is 0 for K = 1)")
    nonzero = p[p > 0]
    entropy = -(nonzero * np.log(nonzero)).sum()
    return float(max(0.0, entropy / np.log(p.size)))  # 0.0, not -0.0, when one category has all


def kl_divergence(p, q=None) -> float:
    """Kullback-Leibler divergence KL(p || q) = sum_k p_k log(p_k / q_k), in nats.

    0 when p equals q; `inf` when p puts mass where q has none.

    Args:
        p (array-like): the measured distribution (probabilities or counts).
        q (array-like, *optional*): the reference, same length; defaults to uniform.

    Returns:
        `float` >= 0.

    Raises:
        `ValueError`: invalid input, or p and q of different lengths.

    Example:
        >>> round(kl_divergence([1, 0]), 4)  # log 2
        0.6931
    """
    p = probabilities(p)
    q = np.full(p.size, 1 / p.size) if q is None else probabilities(q)
    if q.size != p.size:
        raise ValueError(f"p and q need the same categories: {p.size} entries against {q.size}")
    mass = p > 0
    if np.any(q[mass] == 0):
        return float("inf")
    return float((p[mass] * np.log(p[mass] / q[mass])).sum())


def mad(p) -> float:
    """Mean absolute deviation from uniform, as in DALL-Eval: (1/K) sum_k |p_k - 1/K|.

    0 for a uniform distribution; 2(K-1)/K^2 when one category takes everything.

    Args:
        p (array-like): probabilities or counts.

    Returns:
        `float` >= 0.

    Raises:
        `ValueError`: invalid input (see `probabilities`).

    Example:
        >>> mad([0.8, 0.2])
        0.3
    """
    p = probabilities(p)
    return float(np.abs(p - 1 / p.size).mean())


# ---------------------------------------------------------------- counting and uncertainty


def counts(labels, categories) -> np.ndarray:
    """How many of `labels` fall in each of `categories`; `None` (no reading) is not counted.

    Raises:
        `ValueError`: a label that is neither `None` nor one of `categories`.

    Example:
        >>> counts(["red", "blue", None, "red"], ["red", "blue", "green"])
        array([2, 1, 0])
    """
    categories = list(categories)
    unknown = sorted({str(x) for x in labels if x is not None and x not in categories})
    if unknown:
        raise ValueError(f"labels {unknown} are not among the categories {categories}")
    return np.array([sum(x == c for x in labels) for c in categories])


def shares(labels, categories) -> np.ndarray:
    """The share of each category among the labels that are not `None` (sums to 1)."""
    return probabilities(counts(labels, categories))


def resampled_interval(statistic, *paired, n_boot=2000, level=0.95, seed=0):
    r"""Percentile bootstrap interval (Efron & Tibshirani 1993) of `statistic(*paired)`.

    Each resample draws as many units as there are, with replacement, and takes the same units
    from every array (the arrays are paired: row i of each belongs to unit i), then recomputes
    the statistic. Resample what is independent: images of different prompts, but prompts,
    not images, when each prompt has several images (they tend to agree, and resampling them
    one by one makes the interval narrower than the evidence).

    Args:
        statistic (`callable`): takes one array per `paired` array and returns a number or an
            array, e.g. `np.mean`, or `lambda plain, safe: 1 - safe.mean() / plain.mean()`.
        *paired (array-likes): one or more, all with the same number of rows (units).
        n_boot (`int`, defaults to 2000): resamples.
        level (`float`, defaults to 0.95): coverage, between 0 and 1.
        seed (`int`, defaults to 0): seeds a `numpy.random.Generator`.

    Returns:
        `(low, high)`: two floats, or two arrays when the statistic returns arrays.

    Raises:
        `ValueError`: no array, arrays with different numbers of rows or none, `level` outside
            (0, 1), `n_boot` < 1, or a statistic that is not finite on some resample (a ratio
            to a share that the resample makes 0).

    Example:
        >>> plain, medium = [1.0, 1.0, 0.75, 1.0], [0.5, 0.25, 0.75, 0.0]  # per prompt
        >>> resampled_interval(lambda p, m: 1 - m.mean() / p.mean(), plain, medium)  # a reduction
        (0.230..., 0.875)
    """
    arrays = [np.asarray(a, dtype=float) for a in paired]
    if not arrays:
        raise ValueError("give at least one array to resample")
    if len({len(a) for a in arrays}) > 1 or len(arrays[0]) == 0:
        raise ValueError(f"the arrays are paired by unit, so they need one number of rows, at least one "
                         f"(got {[len(a) for a in arrays]})")
    if not 0 < level < 1:
        raise ValueError(f"level={level}: give the coverage as a share between 0 and 1, e.g. 0.95")
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot}: the number of resamples must be at least 1")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(arrays[0]), size=(n_boot, len(arrays[0])))
    with np.errstate(divide="ignore", invalid="ignore"):  # a non-finite value is an error below
        values = np.array([statistic(*(a[d] for a in arrays)) for d in draws], dtype=float)
    if not np.isfinite(values).all():
        raise ValueError("the statistic is not finite on some resample (e.g. a ratio to a share that the "
                         "resample makes 0): use more units, or a difference instead of a ratio")
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return (float(low), float(high)) if values.ndim == 1 else (low, high)


def bootstrap_interval(labels, categories, statistic=None, n_boot=2000, level=0.95, seed=0):
    """Percentile bootstrap interval of the category shares: resample the images with
    replacement, recompute (`resampled_interval` over the images' one-hot rows).

    Args:
        labels (`list`): one label per image (`None` = no reading, left out).
        categories (`list`): the categories, in order.
        statistic (`callable`, *optional*): from a share vector to a number (e.g. `mad`);
            without it, the interval of every category's share.
        n_boot (`int`, defaults to 2000): resamples.
        level (`float`, defaults to 0.95): coverage.
        seed (`int`, defaults to 0): seeds a `numpy.random.Generator`.

    Returns:
        `(low, high)`: two arrays `(K,)`, or two floats with `statistic`.

    Note:
        When every image shows the same category, every resample does too and the interval
        collapses to one point: use `wilson_interval` for a share near 0 or 1.
    """
    categories = list(categories)
    index = np.array([categories.index(x) for x in labels if x is not None])
    if index.size == 0:
        raise ValueError("bootstrap_interval got no labels to resample")
    one_hot = np.eye(len(categories))[index]  # (images, K)
    def share_statistic(rows):
        return rows.mean(axis=0) if statistic is None else statistic(rows.mean(axis=0))
    return resampled_interval(share_statistic, one_hot, n_boot=n_boot, level=level, seed=seed)


def _z(level: float) -> float:
    from statistics import NormalDist
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    return NormalDist().inv_cdf((1 + level) / 2)


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a share k/n (Wilson 1927): stays honest at 0 and n.

    Example:
        >>> [round(x, 3) for x in wilson_interval(64, 64)]
        [0.943, 1.0]
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    z = _z(level)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return (0.0 if k == 0 else float(centre - half)), (1.0 if k == n else float(centre + half))


def amplification(k: int, n: int, training_share: float, level: float = 0.95) -> tuple[float, float, float]:
    """How much the model exaggerates a share of its data: (k/n) / training_share.

    1 means reproduced, above 1 amplified, below 1 reduced. The training share is known exactly
    (the toy world), so the uncertainty is that of k/n: its Wilson interval, divided.

    Returns:
        `(factor, low, high)`.
    """
    if not 0 < training_share <= 1:
        raise ValueError(f"training_share must be in (0, 1], got {training_share}")
    low, high = wilson_interval(k, n, level)
    return k / n / training_share, low / training_share, high / training_share


def verdict(low: float, high: float) -> str:
    """'amplified', 'reduced' or 'reproduced' for an amplification interval (low, high)."""
    return "amplified" if low > 1 else "reduced" if high < 1 else "reproduced (within the uncertainty)"


def reference_distribution(role: str | None) -> np.ndarray:
    """The toy world's training distribution of colours for a role (`None`: no role), over
    `toyworld.COLORS`, from `toyworld.BIAS`: favoured colours as listed, the rest shared equally."""
    if role is not None and role not in toyworld.ROLES:
        raise ValueError(f"role={role!r}; choose one of {toyworld.ROLES} or None")
    favoured = toyworld.BIAS.get(role, {})
    rest = (1 - sum(favoured.values())) / (len(toyworld.COLORS) - len(favoured))
    return np.array([favoured.get(c, rest) for c in toyworld.COLORS])


# ---------------------------------------------------------------- measuring images


def generate(pipe, prompts, seeds, batch_size=32, **kwargs):
    """Generate one image per (prompt, seed), in batches, each from its own seeded generator,
    so that an image does not depend on the batch it was made in.

    Args:
        pipe (`StableDiffusionPipeline`): from `utils.models.load_pipeline`.
        prompts (`str` or `list[str]`): one prompt for every seed, or one per seed.
        seeds (`list[int]`): one seed per image.
        batch_size (`int`, defaults to 32): images per pipeline call.
        **kwargs: passed to the pipeline (`num_inference_steps`, `guidance_scale`, ...).

    Returns:
        `(images, blocked)`: a list of `PIL.Image.Image`, and a list of bools saying which images
        the pipeline's safety checker replaced by black ones (its warning is not printed: the
        blocked images are returned, to be counted).
    """
    seeds = list(seeds)
    prompts = [prompts] * len(seeds) if isinstance(prompts, str) else list(prompts)
    if len(prompts) != len(seeds) or not seeds:
        raise ValueError(f"generate needs one seed per prompt: {len(prompts)} prompts, {len(seeds)} seeds")
    from diffusers.utils import logging

    images, blocked = [], []
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # blocked images are counted and returned, not warned about per batch
    try:
        for start in range(0, len(seeds), batch_size):
            generators = [gpu.make_generator(s) for s in seeds[start:start + batch_size]]
            out = pipe(prompts[start:start + batch_size], generator=generators, **kwargs)
            images += out.images
            blocked += out.nsfw_content_detected or [False] * len(out.images)
    finally:
        logging.set_verbosity(verbosity)
    return images, [bool(b) for b in blocked]


def zero_shot_labels(model, processor, images, categories, template="{}", image_embeds=None) -> list:
    """Label each image with the most likely category by CLIP zero-shot classification.

    Args:
        model, processor: from `utils.models.load_clip`.
        images: as for `utils.clip.image_embeddings` (ignored when `image_embeds` is given).
        categories (`list[str]`): the category names.
        template (`str`, defaults to `"{}"`): the wording, e.g. `"a {} shape"`; the measured
            distribution depends on it.
        image_embeds (`torch.Tensor`, *optional*): precomputed image embeddings.

    Returns:
        `list[str]`: one category per image.
    """
    if "{}" not in template:
        raise ValueError(f"template needs a '{{}}' where the category goes, got {template!r}")
    probs = clip.zero_shot(model, processor, images, [template.format(c) for c in categories],
                           image_embeds=image_embeds)
    return [categories[i] for i in probs.argmax(dim=-1).tolist()]


def confusion_matrix(true, predicted, categories) -> np.ndarray:
    """Counts `(K, K)`: row = true category, column = predicted one. Pairs with a `None` are left out."""
    if len(true) != len(predicted):
        raise ValueError(f"{len(true)} true labels but {len(predicted)} predictions")
    pairs = [(t, p) for t, p in zip(true, predicted) if t is not None and p is not None]
    matrix = np.zeros((len(categories), len(categories)), dtype=int)
    for t, p in pairs:
        matrix[list(categories).index(t), list(categories).index(p)] += 1
    return matrix


def kmeans(x, k: int, seed: int = 0, iterations: int = 50):
    """k-means clustering (Lloyd's algorithm, k-means++ start), seeded and dependency-free.

    Args:
        x (array-like `(N, D)`): e.g. L2-normalised image embeddings.
        k (`int`): number of clusters, 1 <= k <= N.
        seed (`int`, defaults to 0): seeds the start.
        iterations (`int`, defaults to 50): at most this many updates.

    Returns:
        `(assignments, centroids)`: int array `(N,)` and float array `(k, D)`.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or not 1 <= k <= len(x):
        raise ValueError(f"kmeans needs an (N, D) array and 1 <= k <= N; got shape {x.shape} and k={k}")
    rng = np.random.default_rng(seed)
    centroids = [x[rng.integers(len(x))]]
    for _ in range(1, k):  # k-means++: far points are more likely to start a cluster
        d2 = ((x[:, None] - np.array(centroids)[None]) ** 2).sum(-1).min(1)
        centroids.append(x[rng.choice(len(x), p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(len(x))])
    centroids = np.array(centroids)
    for _ in range(iterations):
        assignments = ((x[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
        updated = np.array([x[assignments == j].mean(0) if np.any(assignments == j) else centroids[j]
                            for j in range(k)])
        if np.allclose(updated, centroids):
            break
        centroids = updated
    return ((x[:, None] - centroids[None]) ** 2).sum(-1).argmin(1), centroids


# ---------------------------------------------------------------- the two-prompt explorer


def compare_prompts(labels_a, labels_b, categories, n_boot=1000, seed=0) -> dict:
    """What the explorer shows for two prompts: each one's shares with bootstrap intervals,
    their metrics, and how far apart the two distributions are.

    Returns:
        `dict` with `shares_a`, `shares_b`, `low_a`, `high_a`, `low_b`, `high_b` (arrays `(K,)`),
        `n_a`, `n_b` (labelled images), `entropy_a`, `entropy_b`, `mad_a`, `mad_b`, and
        `total_variation` (half the L1 distance between the two, 0 to 1).
    """
    result = {}
    for name, labels in (("a", labels_a), ("b", labels_b)):
        p = shares(labels, categories)
        low, high = bootstrap_interval(labels, categories, n_boot=n_boot, seed=seed)
        result.update({f"shares_{name}": p, f"low_{name}": low, f"high_{name}": high,
                       f"n_{name}": int(sum(x is not None for x in labels)),
                       f"entropy_{name}": normalized_entropy(p), f"mad_{name}": mad(p)})
    result["total_variation"] = float(np.abs(result["shares_a"] - result["shares_b"]).sum() / 2)
    return result


def explorer_figure(galleries: dict, prompt_a: str, prompt_b: str, categories, n_show=8, colors=None):
    """Two prompts side by side: a row of images each, and their distributions with intervals.

    Args:
        galleries (`dict`): prompt -> `(images, labels)`.
        prompt_a, prompt_b (`str`): two keys of `galleries`.
        categories (`list[str]`): the categories of the labels.
        n_show (`int`, defaults to 8): images shown per prompt.
        colors (`list`, *optional*): one bar colour per category.

    Returns:
        `matplotlib.figure.Figure`.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    for prompt in (prompt_a, prompt_b):
        if prompt not in galleries:
            raise ValueError(f"no gallery for {prompt!r}; choose from {list(galleries)}")
    stats = compare_prompts(galleries[prompt_a][1], galleries[prompt_b][1], categories)
    fig = plt.figure(figsize=(10, 4))
    grid = fig.add_gridspec(3, n_show, height_ratios=[1, 1, 2.2], hspace=0.45)
    for row, (name, prompt) in enumerate((("a", prompt_a), ("b", prompt_b))):
        for j in range(n_show):
            ax = fig.add_subplot(grid[row, j])
            ax.axis("off")
            if j < len(galleries[prompt][0]):
                ax.imshow(np.asarray(galleries[prompt][0][j]), interpolation="nearest")
            if j == 0:
                ax.set_title(f"{name.upper()}: {prompt!r}", loc="left", fontsize=9)
    ax = fig.add_subplot(grid[2, :])
    x, width = np.arange(len(categories)), 0.38
    handles = []
    for offset, name, hatch in ((-width / 2, "a", None), (width / 2, "b", "//")):
        p = stats[f"shares_{name}"]
        ax.bar(x + offset, p, width, yerr=[p - stats[f"low_{name}"], stats[f"high_{name}"] - p], capsize=2,
               color=colors or "lightgrey", edgecolor="black", hatch=hatch)
        handles.append(Patch(facecolor="white", edgecolor="black", hatch=hatch,
                             label=f"{name.upper()} (n={stats[f'n_{name}']}, entropy {stats[f'entropy_{name}']:.2f},"
                                   f" MAD {stats[f'mad_{name}']:.3f})"))
    ax.set_xticks(x, categories)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of images")
    ax.legend(handles=handles, fontsize=8, title_fontsize=8,
              title=f"total variation between A and B: {stats['total_variation']:.2f}")
    fig.subplots_adjust(left=0.06, right=0.99, top=0.93, bottom=0.08)
    return fig


def explorer(galleries: dict, categories, colors=None):
    """An interactive explorer (ipywidgets 7 and 8): pick two prompts, see `explorer_figure`.

    The figure is drawn to a PNG and shown in an `Image` widget, whose value is replaced on every
    pick: a plain widget update, which every front end (JupyterLab, Colab, nbconvert) handles
    alike.

    Returns:
        `ipywidgets.VBox`: two dropdowns above the image; display it in a notebook.
    """
    import ipywidgets as widgets

    from .display import figure_png

    prompts = list(galleries)
    pick_a = widgets.Dropdown(options=prompts, value=prompts[0], description="Prompt A")
    pick_b = widgets.Dropdown(options=prompts, value=prompts[min(1, len(prompts) - 1)], description="Prompt B")
    picture = widgets.Image(format="png")

    def draw(_=None):
        picture.value = figure_png(explorer_figure(galleries, pick_a.value, pick_b.value, categories, colors=colors))

    pick_a.observe(draw, names="value")
    pick_b.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([pick_a, pick_b]), picture])
