"""Validation helpers shared by every model config.

Every toggle of every model is checked when the model is built, and a bad value raises
:class:`ToggleError`, which names the toggle, the value and what is allowed. Grid specs
reuse the same checks (they build each model on the meta device), so a typo in a YAML file
is reported with exactly the message a Python user would see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any, TypeVar

C = TypeVar("C")  # a model's config dataclass


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


class InertToggleError(ToggleError):
    """A toggle was set explicitly where another toggle makes it do nothing.

    ``cause`` is the setting that makes it inert, e.g. ``"se=none"``. Refusing such a setting
    (rather than ignoring it) keeps a grid from training the same model under two names.
    """

    def __init__(self, toggle: str, value: Any, cause: str):
        self.cause = cause
        ValueError.__init__(self, f"toggle '{toggle}' has no effect with {cause} (got {value!r})")
        self.toggle, self.value = toggle, value
        self.allowed = f"leave '{toggle}' unset when {cause}"


def refuse_inert(explicit: Iterable[str] | dict, inert: dict[str, str], values: dict) -> None:
    """Raise :class:`InertToggleError` for the first explicitly set toggle that is inert.

    explicit: the toggles the caller set (not a variant's defaults). inert: toggle -> the
    setting that makes it inert in this configuration (``{"se_reduction": "se=none"}``).
    values: the resolved toggle values, for the message.
    """
    for name in explicit:
        if name in inert:
            raise InertToggleError(name, values.get(name), inert[name])


def resolve_config(
    config_cls: type[C],
    cfg: C | None,
    toggles: dict[str, Any],
    explicit: Iterable[str] | None,
    known: Iterable[str],
) -> C:
    """A model's typed config from either a config object or keyword toggles, not both.

    An unknown toggle is a ``TypeError``; a toggle the caller chose (``explicit``; default:
    every keyword given) that is inert in the resolved config, an ``InertToggleError``. The
    register functions pass ``explicit``, so a variant's own defaults are never refused.
    """
    if cfg is None:
        unknown = sorted(set(toggles) - set(known))
        if unknown:
            model = config_cls.__name__.removesuffix("Config")
            raise TypeError(f"unknown {model} toggles {unknown}; known: {list(known)}")
        cfg = config_cls(**toggles)
    elif toggles:
        raise TypeError(f"pass either a {config_cls.__name__} or keyword toggles, not both")
    values = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    refuse_inert(toggles if explicit is None else explicit, cfg.inert(), values)
    return cfg


# --- shared validators of per-stage lists and rates -----------------------------------------


def check_rate(toggle: str, value: Any) -> float:
    """A probability such as a drop or drop-path rate: a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ToggleError(toggle, value, "a number in [0, 1)")
    return float(value)


def check_int_list(toggle: str, value: Any, n: int | None, low: int, what: str) -> tuple[int, ...]:
    """A list of ``n`` integers >= ``low`` (any non-empty length when ``n`` is None)."""
    allowed = f"{n if n is not None else 'a non-empty list of'} integers >= {low}, {what}"
    if not isinstance(value, (list, tuple)) or not value or (n is not None and len(value) != n):
        raise ToggleError(toggle, value, allowed)
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ToggleError(toggle, value, allowed)
    return tuple(value)


def check_positive_list(toggle: str, value: Any, n: int, what: str) -> tuple[float, ...]:
    """A list of ``n`` numbers > 0 (e.g. one MLP ratio per stage), returned as floats."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) != n
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in value)
    ):
        raise ToggleError(toggle, value, f"{n} numbers > 0, {what}")
    return tuple(float(v) for v in value)


def explicit_toggles(kwargs: dict, names: Iterable[str]) -> tuple[str, ...]:
    """The toggles among a register function's ``kwargs`` (what the caller of
    ``timm.create_model`` passed), leaving out timm's own keywords (``pretrained_cfg``, ...)."""
    names = set(names)
    return tuple(k for k in kwargs if k in names)


def plain(value: Any) -> Any:
    """A JSON-ready copy of a resolved toggle value: tuples become lists."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
