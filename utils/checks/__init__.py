"""Exercise checks: each judges what a learner wrote (a value, a function, a tensor).

One submodule per notebook: `start` (`notebooks/00_start_here.ipynb`), `toy_world` (01),
`inference` (02), `safety` (03), `sld` (04), `bias` (05). Every check:

- says "Not yet solved" with a hint when the learner's cell still holds the placeholder
  (`...`, Python's Ellipsis), so running every cell of an untouched notebook never crashes;
- judges the learner's answer by what it does, never by comparing to one seed's output;
- says what is wrong without giving the answer away;
- prints its verdict and returns a `Verdict`: true when right, false otherwise.
"""

from __future__ import annotations

from ..i18n import tr

PLACEHOLDER = ...
"""What an exercise cell holds until the learner answers: `answer = ...`."""


def is_placeholder(value) -> bool:
    """True while the learner has not replaced the placeholder (also for a function returning it)."""
    return value is PLACEHOLDER


class Verdict:
    """A check's result: true when right (`assert check(answer)` in tests). A notebook shows
    nothing for it, since the check has printed its verdict already."""

    def __init__(self, right: bool):
        self.right = right

    def __bool__(self):
        return self.right

    def __repr__(self):
        return f"Verdict({self.right})"

    def _ipython_display_(self):
        """Display nothing: the printed verdict is the output."""


def not_yet(hint: str) -> Verdict:
    """Print "Not yet solved" with a hint; return a false verdict."""
    print(tr("Not yet solved: {hint}", hint=hint))
    return Verdict(False)


def wrong(message: str) -> Verdict:
    """Print what is wrong (never the answer); return a false verdict."""
    print(tr("Not quite: {message}", message=message))
    return Verdict(False)


def right(message: str = "") -> Verdict:
    """Print the verdict for a right answer; return a true verdict."""
    print(tr("Correct!") + (f" {message}" if message else ""))
    return Verdict(True)
