"""Exercise checks: each judges what a learner wrote (a value, a function, a tensor).

One submodule per notebook: `start` (`notebooks/00_start_here.ipynb`), `toy_world` (01),
`inference` (02), `safety` (03), `sld` (04), `bias` (05). Every check:

- says "Not yet solved" with a hint when the learner's cell still holds the placeholder
  (`...`, Python's Ellipsis), so running every cell of an untouched notebook never crashes;
- judges the learner's answer by what it does, never by comparing to one seed's output;
- says what is wrong without giving the answer away;
- returns `True` when right and `False` otherwise, and prints its verdict.
"""

from __future__ import annotations

PLACEHOLDER = ...
"""What an exercise cell holds until the learner answers: `answer = ...`."""


def is_placeholder(value) -> bool:
    """True while the learner has not replaced the placeholder (also for a function returning it)."""
    return value is PLACEHOLDER


def not_yet(hint: str) -> bool:
    """Print "Not yet solved" with a hint; return False."""
    print(f"Not yet solved: {hint}")
    return False


def wrong(message: str) -> bool:
    """Print what is wrong (never the answer); return False."""
    print(f"Not quite: {message}")
    return False


def right(message: str = "") -> bool:
    """Print the verdict for a right answer; return True."""
    print("Correct!" + (f" {message}" if message else ""))
    return True
