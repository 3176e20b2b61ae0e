"""The small package that the Responsible Diffusion notebooks import.

Each module is named for what it teaches or does:

- `utils.gpu`: where am I, which device and dtype, memory, timing, seeding.
- `utils.models`: the course's profiles (`toy`, `sd15`, `auto`) and loading.
- `utils.toyworld`: the toy world's images, captions and ground-truth decoder.
- `utils.display`: image grids.

Run as commands, not imported here: `python -m utils.train` (rebuilds the toy
models) and `python -m utils.evaluate` (measures them).

Heavy libraries (diffusers, transformers) are imported only when a model is
loaded, so `import utils` stays quick. To add a module, add its name below.

Example:

```py
>>> import utils
>>> report = utils.gpu.preflight()  # prints where you are and what will run
```
"""

from . import display, gpu, models, toyworld

__all__ = ["display", "gpu", "models", "toyworld"]
