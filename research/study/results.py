"""Writing a study's results folder: tables as CSV and JSON, and the manifest."""

from __future__ import annotations

import json
import math
import platform
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

from safefiles import atomic_write_text

TRACKED_PACKAGES = ("anprfed", "flwr", "torch", "opacus", "dp-accounting", "cryptography", "pandas")


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become strings, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    return value


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (non-finite numbers as strings), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")


def write_table(rows: Sequence[dict[str, Any]], stem: Path) -> tuple[Path, Path]:
    """Write the same rows as ``<stem>.csv`` and ``<stem>.json`` (each atomically)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv_path = atomic_write_text(
        stem.with_suffix(".csv"), pd.DataFrame(list(rows)).to_csv(index=False)
    )
    json_path = write_json(stem.with_suffix(".json"), list(rows))
    return csv_path, json_path


def package_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour the results depend on."""
    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
