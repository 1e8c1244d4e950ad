"""Parsing ``key=value`` overrides from the command line into typed config dictionaries."""

from __future__ import annotations

import yaml

SECTIONS = ("model", "data", "train")


def parse_value(text: str):
    """YAML scalars and lists: ``3`` -> 3, ``true`` -> True, ``[3,5]`` -> [3, 5], ``low`` -> 'low'."""
    value = yaml.safe_load(text) if text != "" else ""
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        try:
            return float(value)
        except ValueError:
            pass
    return value


def parse_sets(items: list[str]) -> dict[str, dict]:
    """``["dwconv=false", "train.lr=1e-3"]`` -> ``{"model": {...}, "train": {...}, "data": {}}``.

    A bare key is a model toggle; ``data.KEY`` and ``train.KEY`` address those sections.
    """
    out: dict[str, dict] = {s: {} for s in SECTIONS}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        section, _, name = key.rpartition(".")
        section = section or "model"
        if section not in SECTIONS:
            raise ValueError(
                f"--set {key}: section must be one of {SECTIONS} (or none for a toggle)"
            )
        out[section][name] = parse_value(text)
    return out
