"""The dataset layer: read any supported format as canonical OpenAI chat JSONL, validate it,
count its tokens, estimate its cost, store it content-addressed, split and export it.

Pure functions over files: no SQL and no CLI here (the ledger and `ftm datasets` build on it).
"""

from .canonical import Saved, canonical_line, save, split
from .export import CannotHold, export
from .formats import EXPORTS, FORMATS, detect
from .known_models import ModelInfo, model_info, resolve_epochs
from .preference import kind_of, require_kind
from .report import Problem, Report
from .source import read
from .validate import estimate, example_hash, validate

__all__ = [
    "EXPORTS",
    "FORMATS",
    "CannotHold",
    "ModelInfo",
    "Problem",
    "Report",
    "Saved",
    "canonical_line",
    "detect",
    "estimate",
    "example_hash",
    "export",
    "kind_of",
    "model_info",
    "read",
    "require_kind",
    "resolve_epochs",
    "save",
    "split",
    "validate",
]
