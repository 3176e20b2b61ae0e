"""The small package that the Responsible Diffusion notebooks import.

One module per topic, each named for what it teaches and naming the notebook that teaches it:

- `utils.gpu`: device, dtype, seeding, timing, memory.
- `utils.models`: the course's profiles (`toy`, `sd15`, `auto`), the loaders, and the
  preflight report at the top of every notebook (also `utils.preflight()`).
- `utils.clip`: CLIP embeddings and zero-shot classification.
- `utils.inference`: the sampling loop by hand, and generation with checked inputs (notebook 02).
- `utils.toyworld`: the toy world's images, captions, ground-truth decoder and toy I2P prompts.
- `utils.display`: image grids, plots and widgets.
- `utils.checks`: the exercise checks, one submodule per notebook.
- `utils.safety`, `utils.sld`, `utils.bias`: the safety checker, Safe Latent Diffusion and
  bias analysis (notebooks 03, 04, 05).

Code that only *builds* the shipped toy models lives apart, in `utils.toy` (training,
evaluation, model cards); a learner never needs to read it. Run as commands:
`python -m utils.toy.train`, `python -m utils.toy.evaluate`, `python -m utils.toy.cards`.

Heavy libraries (diffusers, transformers) are imported only when a model is loaded, so
`import utils` stays quick.

Example:

```py
>>> import utils
>>> report = utils.preflight()  # prints where you are and what will run
```
"""

import importlib

from . import clip, display, gpu, models, toyworld
from .models import preflight

_LOADED_ON_FIRST_USE = ("bias", "checks", "inference", "safety", "sld")  # they import diffusers

__all__ = ["clip", "display", "gpu", "models", "preflight", "toyworld", *_LOADED_ON_FIRST_USE]


def __getattr__(name):
    """`utils.sld` and the other unit modules are imported the first time they are used."""
    if name in _LOADED_ON_FIRST_USE:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'utils' has no attribute {name!r}")
