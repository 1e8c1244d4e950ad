"""Import one model file of an official repository checkout, for the comparison scripts.

Only the file is imported, not its package (whose ``__init__`` star-imports the world). The
official code targets old timm releases and imports ``timm.models.layers`` and
``timm.models.registry``; timm 1.x still ships both as deprecated aliases, so they are aliased
to their new homes only if missing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

OLD_TIMM_MODULES = (("timm.models.layers", "timm.layers"), ("timm.models.registry", "timm.models"))


def import_official_file(path: Path, module_name: str) -> ModuleType:
    """Execute ``path`` as module ``module_name`` (registered in ``sys.modules``)."""
    for old, new in OLD_TIMM_MODULES:
        try:
            importlib.import_module(old)
        except ModuleNotFoundError:
            sys.modules[old] = importlib.import_module(new)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # timm's register_model looks the module up
    spec.loader.exec_module(module)
    return module


def add_timing_arguments(parser: argparse.ArgumentParser, steps: int) -> None:
    """The options every comparison takes: repeats, timed steps, seed, CPU threads."""
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=steps, help="timed steps per repeat")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def apply_timing_arguments(args: argparse.Namespace) -> None:
    """Set the thread count (if given) and the seed."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
