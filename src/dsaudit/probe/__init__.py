"""The probe: a quick CNN that measures how much leakage inflates validation scores.

`design` (numpy/scipy only) builds the counterfactual and its statistics; `runner` orchestrates
a budgeted run; `model` is the only module that imports TensorFlow, and only when a probe runs.
Importing this package imports neither TensorFlow nor `model`.
"""

from __future__ import annotations

import importlib.util


def tensorflow_available() -> bool:
    """True when TensorFlow can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False
