"""`ftm ui`: a dashboard over the ledger in the browser (runs, curves, comparisons, datasets,
models and a playground), served from this package's own files: it works with no internet."""

from .app import make_app

__all__ = ["make_app"]
