"""Held-out scores kept with a run, so intervals and paired differences can be recomputed.

For every design and sweep point the runner writes ``held_out/<design>-eps<e>-ret<w>d.npz``:
each held-out vehicle's score and truth flag, the index of its force (``force_names``), and
per force a *split fingerprint* and the training counts. No identifier is written: vehicles
appear only by position, in the order the force's dataset lists them.

The split fingerprint is a SHA-256 digest over the force's ordered held-out pseudonyms (16 hex
characters). Two evaluations with the same fingerprint scored the same vehicles in the same
order, so their scores can be paired position by position (``anprfed study compare``); a
digest of thousands of keyed pseudonyms reveals none of them.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safefiles import atomic_write_bytes

FOLDER = "held_out"


def tag_for(design: str, epsilon_label: str, retention_days: int) -> str:
    """The sweep point's tag, as the server folder is named: ``federated-eps4-ret365d``."""
    return f"{design}-eps{epsilon_label}-ret{int(retention_days)}d"


def split_fingerprint(vehicles: Sequence[str] | np.ndarray) -> str:
    """A digest naming the held-out set and its order (never any one vehicle)."""
    digest = hashlib.sha256()
    for vehicle in np.asarray(vehicles, dtype=str):
        digest.update(vehicle.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ForceSplit:
    """What one force's dataset says about a sweep point's split (counts, no identifiers)."""

    force: str
    fingerprint: str
    train_vehicles: int
    train_positives: int
    held_out_vehicles: int


def force_split(force: str, dataset: Any) -> ForceSplit:
    """Counts and fingerprint from a force's ``ForceDataset`` (read in the force's process)."""
    return ForceSplit(
        force=force,
        fingerprint=split_fingerprint(dataset.test.vehicles),
        train_vehicles=len(dataset.train_labels),
        train_positives=int(np.asarray(dataset.train_labels).sum()),
        held_out_vehicles=len(dataset.test.vehicles),
    )


@dataclass(frozen=True)
class HeldOut:
    """One sweep point's held-out scores across forces (``strata`` = force index)."""

    forces: tuple[str, ...]
    scores: np.ndarray
    truth: np.ndarray
    strata: np.ndarray
    fingerprints: tuple[str, ...]
    train_vehicles: tuple[int, ...]
    train_positives: tuple[int, ...]

    @property
    def split(self) -> str:
        """One fingerprint for the whole held-out set (all forces, in order)."""
        return hashlib.sha256("|".join(self.fingerprints).encode()).hexdigest()[:16]

    def force(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(scores, truth) of one force's held-out vehicles."""
        mask = self.strata == self.forces.index(name)
        return self.scores[mask], self.truth[mask]


def save_held_out(
    path: Path,
    per_force: Sequence[Any],
    splits: Sequence[ForceSplit],
) -> Path:
    """Write ``per_force`` (``ForceScores``) and their splits as one ``.npz`` (atomically)."""
    by_name = {s.force: s for s in splits}
    forces = [f.force for f in per_force]
    missing = [f for f in forces if f not in by_name]
    if missing:
        raise ValueError(f"no split recorded for force(s) {', '.join(missing)}")
    for f in per_force:
        if len(f.scores) != by_name[f.force].held_out_vehicles:
            raise ValueError(
                f"{f.force}: {len(f.scores)} scores for {by_name[f.force].held_out_vehicles} "
                "held-out vehicles"
            )
    buffer = io.BytesIO()
    np.savez(
        buffer,
        force_names=np.asarray(forces, dtype=str),
        scores=np.concatenate([np.asarray(f.scores, np.float64) for f in per_force]),
        truth=np.concatenate([np.asarray(f.truth, np.float64) for f in per_force]),
        strata=np.concatenate(
            [np.full(len(f.scores), i, np.int32) for i, f in enumerate(per_force)]
        ),
        fingerprints=np.asarray([by_name[f].fingerprint for f in forces], dtype=str),
        train_vehicles=np.asarray([by_name[f].train_vehicles for f in forces], np.int64),
        train_positives=np.asarray([by_name[f].train_positives for f in forces], np.int64),
    )
    return atomic_write_bytes(Path(path), buffer.getvalue(), mode=0o644)


def load_held_out(path: Path) -> HeldOut:
    """Read a file written by :func:`save_held_out`; the error names the file."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            return HeldOut(
                forces=tuple(str(f) for f in data["force_names"]),
                scores=np.asarray(data["scores"], np.float64),
                truth=np.asarray(data["truth"], np.float64),
                strata=np.asarray(data["strata"], np.int64),
                fingerprints=tuple(str(f) for f in data["fingerprints"]),
                train_vehicles=tuple(int(v) for v in data["train_vehicles"]),
                train_positives=tuple(int(v) for v in data["train_positives"]),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{Path(path).name}: not a held-out scores file ({exc})") from None
