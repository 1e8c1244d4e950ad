"""The top level grid specs and sweep specs share: name, description, base and profiles.

:func:`parse_top` reads a spec file (known keys only, required keys present), checks the shared
keys and returns the fields of :class:`SpecBase`, whose :meth:`SpecBase.resolved_base` merges
base, the shared profiles (``ablations/profiles.yaml``) and the spec's own profile overrides.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.config.schema import (
    PROFILE_SECTIONS,
    PROFILES,
    SpecError,
    load_yaml,
    resolved,
    typed_layer,
)
from experiments.run.seeds import SeedPolicy

COMMON_KEYS = {
    "name": "text: the name (default: from the path)",
    "description": "text: one line shown by `make help`",
    "base": "mapping with model, data, train: the configuration shared by every run",
    "profiles": "mapping of smoke/pilot/quick/paper to overrides of base (and its seeds: batch, cap)",
}


@dataclass
class SpecBase:
    """What every spec has: where it is, its name, and the layers of its configuration."""

    path: Path
    name: str
    description: str
    base: dict
    profiles: dict  # the spec's own: profile -> overrides of base
    profile_defaults: dict  # the shared ones (ablations/profiles.yaml)

    def resolved_base(self, profile: str) -> dict:
        """Base with the shared and then the spec's own overrides of ``profile``."""
        layers = [self.profile_defaults.get(profile), self.profiles.get(profile)]
        layers = [{k: v for k, v in (layer or {}).items() if k != "seeds"} for layer in layers]
        return resolved(self.base, *layers)

    def seed_policy(self, profile: str) -> SeedPolicy:
        """The profile's seed schedule (shared, then the spec's own), defaults filled in."""
        merged: dict = {}
        for layer in (self.profile_defaults.get(profile), self.profiles.get(profile)):
            merged.update((layer or {}).get("seeds", {}))
        return SeedPolicy(**merged)


def load_mapping(path: Path, keys: dict[str, str], required: tuple[str, ...], what: str) -> dict:
    """Read a spec file whose top level is a mapping: known keys only, required keys present."""
    if not path.is_file():
        raise SpecError(path, "<file>", f"no such {what}")
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise SpecError(path, "<file>", f"a {what} is a mapping with keys " + ", ".join(keys))
    for key in raw:
        if key not in keys:
            allowed = "; ".join(f"{k} ({v})" for k, v in keys.items())
            raise SpecError(path, str(key), f"unknown key; allowed: {allowed}")
    for key in required:
        if key not in raw:
            raise SpecError(path, key, f"missing; {keys[key]}")
    return raw


def _profiles(path: Path, raw: Any, where: str) -> dict:
    """``{smoke|quick|paper: overrides}``, each override typed."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(path, where or "profiles", COMMON_KEYS["profiles"])
    out = {}
    for prof, over in raw.items():
        key = f"{where}.{prof}" if where else str(prof)
        if prof not in PROFILES:
            raise SpecError(path, key, f"unknown profile; allowed: {', '.join(PROFILES)}")
        out[prof] = typed_layer(path, key, over, PROFILE_SECTIONS)
    return out


def load_profile_defaults(spec_path: Path) -> dict:
    """``profiles.yaml`` next to the paper folders (ablations/profiles.yaml), if present."""
    for parent in spec_path.resolve().parents:
        candidate = parent / "profiles.yaml"
        if candidate.is_file():
            return _profiles(candidate, load_yaml(candidate), "")
        if (parent / "pyproject.toml").exists():
            break
    return {}


def parse_top(
    path: Path, keys: dict[str, str], required: tuple[str, ...], what: str, default_name: str
) -> tuple[dict, dict]:
    """The raw mapping of a spec file and the checked fields of :class:`SpecBase`."""
    raw = load_mapping(path, keys, required, what)
    for key in ("name", "description"):
        if key in raw and not isinstance(raw[key], str):
            raise SpecError(path, key, f"got {raw[key]!r}; allowed: text")
    base = typed_layer(path, "base", raw["base"])
    if "name" not in base.get("model", {}):
        raise SpecError(path, "base.model.name", "missing; allowed: a timm model name")
    common = dict(
        path=path,
        name=raw.get("name", default_name),
        description=raw.get("description", ""),
        base=base,
        profiles=_profiles(path, raw.get("profiles"), "profiles"),
        profile_defaults=load_profile_defaults(path),
    )
    return raw, common
