"""Key management of a force store: day keys, the signing key, pseudonym-key rotation.

A rotation re-keys every stored pseudonym (day partitions and label tables) from epoch ``n``
to ``n+1``, deletes derived artifacts (caches keyed by old pseudonyms), destroys the old epoch
key and only then records the new epoch as current. It is recorded in store.json before it
starts, so a crash at any point leaves a pending rotation that the next ``rotate-key`` finishes,
including the erase of the old key (a store left by an older version with a stale epoch key and
no pending rotation is finished too, and reported).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from privacy.pseudonym import rekey_pseudonym_blocks, rekey_pseudonyms
from retention.catalog import CatalogStore
from retention.derived import DerivedStore
from retention.keyring import day_scope, epoch_scope
from retention.partitions import PartitionStore, reads_to_parquet, storage_block
from retention.read_block import ReadBlock


@dataclass(frozen=True)
class RotationReport:
    """What a completed key rotation did (counts only)."""

    old_epoch: int
    new_epoch: int
    partitions_rekeyed: int
    reads_rekeyed: int
    labels_rekeyed: int
    derived_removed: int
    destroyed_key_ids: tuple[str, ...]
    resumed: bool = False


class KeyManagement(PartitionStore, CatalogStore, DerivedStore):
    """Keys and pseudonym-key rotation (part of :class:`retention.store.ForceStore`)."""

    def day_key_ids(self, day: date) -> list[str]:
        """Key ids that encrypt data of ``day`` (its partition and quarantine)."""
        return self.keyring.key_ids_for_day(day)

    def has_key(self, key_id: str) -> bool:
        """Whether ``key_id`` is still in the keyring."""
        return self.keyring.has_key(key_id)

    def signing_key(self) -> Any:
        """The Ed25519 private key that signs the purge log (derived from the master)."""
        return self._signer.signing_key()

    def signing_public_key_hex(self) -> str:
        """The purge-log verification key recorded in store.json."""
        return str(self._meta["signing"]["public_key"])

    def destroy_key(self, key_id: str) -> bool:
        """Remove a data key from the keyring (cryptographic erase); returns whether it existed."""
        return self.keyring.destroy(key_id)

    def rotate_pseudonym_key(self) -> RotationReport:
        """Re-key every stored pseudonym to a new epoch and destroy the old epoch key.

        Crash-safe and resumable: the pending rotation is recorded in store.json first, each
        partition is rewritten atomically with its new epoch in the authenticated header, and a
        rerun continues where it stopped. Derived artifacts (caches keyed by old pseudonyms)
        are deleted. Hold the store lock while calling this.
        """
        rot = self._meta.get("rotation")
        resumed = bool(rot)
        stale = self.stale_epoch_key_ids()
        if stale:
            # an older version crashed between recording the new epoch and erasing the old key
            gone = tuple(self.keyring.destroy_many(stale))
            return RotationReport(self.key_epoch - 1, self.key_epoch, 0, 0, 0, 0, gone, True)
        if not rot:
            old, new = self.key_epoch, self.key_epoch + 1
            self._meta["rotation"] = {"from": old, "to": new}
            self._save_meta()
        else:
            old, new = int(rot["from"]), int(rot["to"])
        if not self.keyring.key_ids_for_scope(epoch_scope(old)):
            # crashed after the old key's erase: everything is at the new epoch already
            return self._finish_rotation(old, new, 0, 0, 0, 0, (), resumed)
        _, old_key = self.keyring.key_for_scope(epoch_scope(old))
        _, new_key = self.keyring.key_for_scope(epoch_scope(new), create=True)
        partitions = reads = 0
        for day in self.days():
            path = self.partition_path(day)
            epoch, table = self._read_sealed_table(
                path, "reads", day_scope(day), day_scope(day), {old, new}
            )
            if epoch == new:
                continue
            block = storage_block(path, table)
            fresh = rekey_pseudonym_blocks(block.vehicle_bytes(), old_key, new_key)
            halves = np.frombuffer(fresh, dtype=">u8").reshape(-1, 2).astype(np.uint64)
            block = ReadBlock(halves[:, 0].copy(), halves[:, 1].copy(), block.camera, block.read_at)
            self._write_sealed(
                path, "reads", day_scope(day), day_scope(day), reads_to_parquet(block), new
            )
            partitions += 1
            reads += len(block)
        labels = 0
        for kind in self.label_kinds():
            epoch, table = self._read_labels_any_epoch(kind, {old, new})
            if epoch == old:
                i = table.column_names.index("vehicle")
                table = table.set_column(
                    i, "vehicle", rekey_pseudonyms(table["vehicle"], old_key, new_key)
                )
                self._write_labels_table(table, kind, new)
                labels += len(table)
        derived = self.derived_artifacts()
        for art in derived:
            self.delete_derived(art.name)
        destroyed = self._destroy_epoch_keys_below(new)
        return self._finish_rotation(
            old, new, partitions, reads, labels, len(derived), destroyed, resumed
        )

    def _finish_rotation(
        self,
        old: int,
        new: int,
        partitions: int,
        reads: int,
        labels: int,
        derived: int,
        destroyed: tuple[str, ...],
        resumed: bool,
    ) -> RotationReport:
        self._meta["key_epoch"] = new
        self._meta.pop("rotation", None)
        self._meta["rotated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self._save_meta()
        return RotationReport(old, new, partitions, reads, labels, derived, destroyed, resumed)

    def stale_epoch_key_ids(self) -> list[str]:
        """Epoch keys older than the current epoch while no rotation is pending: the trace of
        an erase an older version left unfinished (``rotate-key`` destroys them)."""
        if self._meta.get("rotation"):
            return []
        return [
            e.key_id
            for e in self.keyring.entries()
            if e.scope.startswith("epoch:") and int(e.scope[6:]) < self.key_epoch
        ]

    def _destroy_epoch_keys_below(self, epoch: int) -> tuple[str, ...]:
        ids = [
            e.key_id
            for e in self.keyring.entries()
            if e.scope.startswith("epoch:") and int(e.scope[6:]) < epoch
        ]
        return tuple(self.keyring.destroy_many(ids))

    def destroy_stale_epoch_keys(self) -> tuple[str, ...]:
        """Destroy every pseudonym epoch key older than the current epoch (no-op mid-rotation)."""
        if self._meta.get("rotation"):
            return ()
        return self._destroy_epoch_keys_below(self.key_epoch)
