"""VARiant Studio: a local web page that compares configurations of one model side by side.

The logic lives in plain modules, testable without a web framework: `classes` (class names and
the class picker), `entries` (a configuration as typed: a plan or a budget), `compare` (the
`Studio`: runs a request, measures each configuration), `report` (the cost table, chart,
command lines and downloads). `app` is the thin Gradio layer (the optional `studio` extra) and
the only module that imports Gradio.
"""

from .compare import Comparison, Outcome, Studio
from .request import ModelInfo, Request

__all__ = ["Comparison", "ModelInfo", "Outcome", "Request", "Studio"]
