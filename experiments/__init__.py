"""Everything that trains, schedules, stores and analyses ablation runs.

The command line is ``python -m experiments`` (see ``experiments/__main__.py``).
"""
