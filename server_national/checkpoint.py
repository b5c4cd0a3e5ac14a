"""Global-model checkpoints: one ``.npz`` per round plus ``final.npz``.

Each file maps the agreed array names to the global arrays after that round; writes are
atomic (temporary file, fsync, rename) so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord

from safefiles import atomic_write_bytes

FINAL_NAME = "final.npz"


def round_checkpoint_name(server_round: int) -> str:
    """``round-0001.npz`` for round 1."""
    return f"round-{int(server_round):04d}.npz"


def arrays_of(record: ArrayRecord | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Name -> numpy array for an ``ArrayRecord`` or a mapping of arrays."""
    if isinstance(record, ArrayRecord):
        return {name: array.numpy() for name, array in record.items()}
    return {name: np.asarray(value) for name, value in record.items()}


def save_checkpoint(
    directory: Path, name: str, arrays: ArrayRecord | Mapping[str, np.ndarray]
) -> Path:
    """Atomically write ``arrays`` to ``directory/name`` (an ``.npz``); returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays_of(arrays))
    return atomic_write_bytes(directory / name, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """Read a checkpoint back as name -> array (no pickles)."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
