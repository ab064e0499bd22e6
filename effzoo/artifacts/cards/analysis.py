"""`analysis.json`: the measured per-class / per-resolution numbers a card shows (written by
`effzoo.evaluation.card_analysis.run_analysis`; read here, so cards never measure anything themselves)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ANALYSIS_NAME = "analysis.json"
ANALYSIS_FORMAT = "effzoo-analysis/1"


def read_analysis(folder: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(folder) / ANALYSIS_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete it or rerun `effzoo card --evaluate`") from None
    return data if data.get("format") == ANALYSIS_FORMAT else None
