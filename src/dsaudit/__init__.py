"""dsaudit: a data-integrity auditor for image-classification datasets.

The Python API (``dsaudit.scan``, ``dsaudit.Report``, ...) lives in :mod:`dsaudit.api` and is
imported on first use, so ``import dsaudit`` stays fast (no pandas, no numpy, never TensorFlow)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it, imported on first attribute access (PEP 562)
_LAZY = {
    "scan": "dsaudit.api",
    "scan_datasets": "dsaudit.api",
    "Report": "dsaudit.api",
    "load_report": "dsaudit.api",
    "option_keys": "dsaudit.api",
    "ConfigError": "dsaudit.config",
    "DatasetError": "dsaudit.index.layout",
    "Finding": "dsaudit.findings",
    "Severity": "dsaudit.findings",
    "CheckError": "dsaudit.findings",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dsaudit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
