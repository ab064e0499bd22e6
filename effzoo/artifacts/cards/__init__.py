"""Model cards (Mitchell et al. 2019), FactSheets (Arnold et al. 2019) and dataset datasheets (Gebru et al.).

- `write_model_card(folder, meta)`: `model_card.md` + `factsheet.json` + the datasheet copy, from model.json.
- `read_analysis(folder)`: the per-class / per-resolution numbers a card reports (`analysis.json`, measured
  by `effzoo.evaluation.card_analysis.run_analysis`; `effzoo card --evaluate` runs both).
"""

from .analysis import ANALYSIS_NAME, read_analysis
from .datasheets import datasheet_path
from .factsheet import FACTSHEET_NAME, build_factsheet
from .model_card import CARD_NAME, SECTIONS, CardContext, front_matter, load_context, render_model_card, write_model_card

__all__ = [
    "ANALYSIS_NAME", "CARD_NAME", "FACTSHEET_NAME", "SECTIONS", "CardContext", "build_factsheet", "datasheet_path",
    "front_matter", "load_context", "read_analysis", "render_model_card", "write_model_card",
]
