"""report.json: the complete, versioned, machine-readable result (schema_version in the document).

Every finding is here, uncapped; the HTML report links here for anything it had to cut.
"""

from __future__ import annotations

import json
import math
from typing import Any

from dsaudit.findings import ScanResult


def _clean(value: Any) -> Any:
    """Make a value strict-JSON safe: numpy scalars to Python, NaN/inf to null, tuples/sets to lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_clean(v) for v in items]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()
    elif hasattr(value, "tolist"):
        return _clean(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def to_document(result: ScanResult) -> dict[str, Any]:
    return _clean(result.to_dict())


def render(result: ScanResult) -> str:
    return json.dumps(to_document(result), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
