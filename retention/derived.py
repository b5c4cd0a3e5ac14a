"""Derived artifacts of a force store: ``derived/<name>/data.parquet.enc`` and ``manifest.json``.

A derived artifact (a feature cache, say) is computed from some day partitions; its manifest
lists those source days so a purge can find and remove every artifact built from a purged day.
Each artifact has its own data key (scope ``derived:<name>``); replacing or deleting it destroys
that key.

The manifest carries an HMAC-SHA256 (``mac``) under the store's manifest key (derived from the
purge job's signing seed, so a purge-only handle can check it). A manifest whose MAC is missing
or wrong (edited to hide a day, or written by an older version) is *unauthenticated*: its days
are not trusted, the artifact cannot be read, and the next purge removes it. Writers and
deleters hold ``derived.lock`` (``fcntl.flock``), so a training worker writing a cache without
the store lock cannot interleave with a purge or rotation removing it.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from privacy.aead import seal
from retention.keyring import derived_scope
from retention.sealed_files import SealedFileStore, check_name, read_store_file, table_to_parquet
from retention.store_errors import PartitionIntegrityError, StoreError, UnsafePathError
from safefiles.atomic import remove_empty_dir, remove_file

DATA_NAME = "data.parquet.enc"
MANIFEST_NAME = "manifest.json"
LOCK_NAME = "derived.lock"


@dataclass(frozen=True)
class DerivedArtifact:
    """A derived artifact (e.g. a feature cache) and the day partitions it was computed from.

    ``authenticated`` is False when the manifest's MAC is missing or wrong: ``source_days``
    are then not trusted (empty) and any purge removes the artifact.
    """

    name: str
    path: Path
    source_days: tuple[date, ...]
    key_id: str
    authenticated: bool = True


def _context_scope(name: str, source_days: tuple[date, ...]) -> str:
    return f"{derived_scope(name)}|days={','.join(d.isoformat() for d in source_days)}"


def _mac_body(force: str, manifest: dict) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "mac"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return f"anprfed/v1/derived-manifest|force={force}|".encode() + text.encode()


class DerivedStore(SealedFileStore):
    """Derived artifacts and their source days (part of :class:`retention.store.ForceStore`)."""

    @contextmanager
    def derived_lock(self) -> Iterator[None]:
        """Exclusive lock of the derived folder (writers, deleters), across processes."""
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _manifest_mac(self, manifest: dict) -> str:
        key = self._signer.manifest_mac_key()
        return hmac.new(key, _mac_body(self.force, manifest), hashlib.sha256).hexdigest()

    def write_derived(self, name: str, table: pa.Table, source_days: list[date]) -> DerivedArtifact:
        """Write a derived artifact under a fresh key of scope ``derived:<name>``.

        The manifest lists ``source_days`` (authenticated: they are bound into the ciphertext
        and the manifest is MACed), so a purge can find and remove every artifact built from a
        purged day. Replacing an artifact destroys the previous key.
        """
        check_name(name, "derived artifact")
        days = tuple(sorted(set(source_days)))
        d = self.root / "derived" / name
        data = table_to_parquet(table)
        with self.derived_lock():
            old_ids = self.keyring.key_ids_for_scope(derived_scope(name))
            key_id, key = self.keyring.new_key(derived_scope(name))
            data_path = d / DATA_NAME
            context = self._context("derived", _context_scope(name, days))
            self._write_file(data_path, seal(key, key_id, context, data, self.key_epoch))
            manifest = {
                "name": name,
                "source_days": [x.isoformat() for x in days],
                "key_id": key_id,
                "rows": len(table),
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            manifest["mac"] = self._manifest_mac(manifest)
            self._write_file(d / MANIFEST_NAME, json.dumps(manifest, indent=1).encode("utf-8"))
            self.keyring.destroy_many(old_ids)
        return DerivedArtifact(name, data_path, days, key_id)

    def read_derived(self, name: str) -> pa.Table:
        """Read a derived artifact back (integrity-checked)."""
        art = next((a for a in self.derived_artifacts() if a.name == name), None)
        if art is None:
            raise StoreError(f"no derived artifact named {name}")
        if not art.authenticated:
            raise PartitionIntegrityError(
                art.path.parent / MANIFEST_NAME, "manifest MAC missing or wrong"
            )
        _, plain = self._read_sealed(
            art.path, "derived", _context_scope(name, art.source_days), derived_scope(name)
        )
        try:
            return pq.read_table(pa.BufferReader(plain))
        except (pa.ArrowException, OSError):
            raise PartitionIntegrityError(
                art.path, "authenticated content is not Parquet"
            ) from None

    def derived_artifacts(self) -> list[DerivedArtifact]:
        """All derived artifacts with their source days (from each authenticated manifest)."""
        base = self.root / "derived"
        out: list[DerivedArtifact] = []
        for d in sorted(base.iterdir()) if base.is_dir() else []:
            if d.is_symlink():
                raise UnsafePathError(d, "is a symbolic link the store did not create")
            if not d.is_dir():
                continue
            out.append(self._artifact(d))
        return out

    def _artifact(self, d: Path) -> DerivedArtifact:
        manifest = d / MANIFEST_NAME
        try:
            m = json.loads(read_store_file(manifest))
            days = tuple(date.fromisoformat(x) for x in m["source_days"])
            key_id = str(m["key_id"])
            mac = m.get("mac")
        except FileNotFoundError:
            # data without a manifest (crash between the two writes): its days are unknown,
            # so report it with no days and let the caller delete it.
            return DerivedArtifact(d.name, d / DATA_NAME, (), "", authenticated=False)
        except (ValueError, KeyError, TypeError, AttributeError):
            return DerivedArtifact(d.name, d / DATA_NAME, (), "", authenticated=False)
        ok = (
            isinstance(mac, str)
            and m.get("name") == d.name
            and hmac.compare_digest(mac, self._manifest_mac(m))
        )
        if not ok:
            return DerivedArtifact(d.name, d / DATA_NAME, (), key_id, authenticated=False)
        return DerivedArtifact(d.name, d / DATA_NAME, days, key_id)

    def delete_derived(self, name: str) -> None:
        """Destroy a derived artifact's key(s), then remove its files (never following a link)."""
        check_name(name, "derived artifact")
        with self.derived_lock():
            self.keyring.destroy_many(self.keyring.key_ids_for_scope(derived_scope(name)))
            d = self.root / "derived" / name
            try:
                st = os.lstat(d)
            except FileNotFoundError:
                return
            if not stat.S_ISDIR(st.st_mode):
                remove_file(d)  # a link or a stray file: unlink it, never its target
                return
            for dirpath, dirs, files in os.walk(d, topdown=False, followlinks=False):
                for f in files:
                    remove_file(Path(dirpath) / f)
                for sub in dirs:
                    p = Path(dirpath) / sub
                    if p.is_symlink():
                        remove_file(p)
                    else:
                        remove_empty_dir(p)
            remove_empty_dir(d)
