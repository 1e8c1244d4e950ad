"""Shared building blocks of the backbones (token<->map reshapes, channel attention, ...).

One concept per file; the models import from the files directly.
"""
