"""Show images the way the course shows them: small grids with a label above each image.

First used in `notebooks/01_toy_world.ipynb`.
"""

from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np


def show_grid(images, labels=None, cols=8, size=1.4, title=None):
    """Draw images in a grid, pixels kept sharp (toy images are 32x32).

    Args:
        images (`list[PIL.Image.Image]` or `np.ndarray` `(N, H, W, 3)`): the images.
        labels (`list[str]`, *optional*): one short label per image, shown above it.
        cols (`int`, defaults to 8): images per row.
        size (`float`, defaults to 1.4): inches per image.
        title (`str`, *optional*): a title above the grid.

    Returns:
        `matplotlib.figure.Figure`.

    Raises:
        `ValueError`: when there are no images, or labels and images differ in number.

    Example:
        >>> fig = show_grid(pipe("a red circle", num_images_per_prompt=4).images)
    """
    images = list(images)
    if not images:
        raise ValueError("show_grid got no images to show")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"show_grid got {len(images)} images but {len(labels)} labels")
    cols = min(cols, len(images))
    rows = math.ceil(len(images) / cols)
    label_space = 0.45 if labels is not None else 0
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * (size + label_space)),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(np.asarray(images[k]), interpolation="nearest")
            if labels is not None:
                ax.set_title(textwrap.fill(str(labels[k]), width=int(size * 14)), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def figure_png(fig, dpi: int = 80) -> bytes:
    """The figure as PNG bytes, then closed: what an `ipywidgets.Image` shows (notebooks 03, 05).

    A widget that redraws a figure sets `image.value = figure_png(fig)`: a plain widget update,
    which JupyterLab, Colab and nbconvert all handle alike.
    """
    import io

    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=dpi)
    plt.close(fig)
    return png.getvalue()
