"""A DataFrame as a Markdown table: every section of the report writes its tables this way."""

from __future__ import annotations

import pandas as pd


def markdown_table(df: pd.DataFrame) -> str:
    """``DataFrame.to_markdown`` when tabulate is installed, else a plain pipe table."""
    if df.empty:
        return "_(empty)_"
    try:
        return df.to_markdown(index=False, disable_numparse=True)
    except ImportError:
        cells = [[str(v).replace("|", "\\|") for v in row] for row in df.astype(str).to_numpy()]
        header = "| " + " | ".join(map(str, df.columns)) + " |"
        rule = "|" + "|".join("---" for _ in df.columns) + "|"
        return "\n".join([header, rule] + ["| " + " | ".join(r) + " |" for r in cells])
