"""Validation helpers shared by every model config.

Every toggle of every model is checked when the model is built, and a bad value raises
:class:`ToggleError`, which names the toggle, the value and what is allowed. Grid specs
reuse the same checks (they build each model on the meta device), so a typo in a YAML file
is reported with exactly the message a Python user would see.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ToggleError(ValueError):
    """A model toggle got a value it does not accept."""

    def __init__(self, toggle: str, value: Any, allowed: str):
        self.toggle, self.value, self.allowed = toggle, value, allowed
        super().__init__(f"toggle '{toggle}' got {value!r}; allowed: {allowed}")


def check_choice(toggle: str, value: Any, choices: Iterable[Any]) -> Any:
    choices = list(choices)
    if value not in choices:
        raise ToggleError(toggle, value, "one of " + ", ".join(repr(c) for c in choices))
    return value


def check_bool(toggle: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ToggleError(toggle, value, "true or false")
    return value


def check_int(toggle: str, value: Any, *, low: int | None = None, odd: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ToggleError(toggle, value, "an integer" + (f" >= {low}" if low is not None else ""))
    if low is not None and value < low:
        raise ToggleError(toggle, value, f"an integer >= {low}")
    if odd and value % 2 == 0:
        raise ToggleError(
            toggle, value, "an odd integer" + (f" >= {low}" if low is not None else "")
        )
    return value


def check_positive(toggle: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ToggleError(toggle, value, "a number > 0")
    return float(value)
