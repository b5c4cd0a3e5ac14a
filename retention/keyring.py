"""The store's keyring: random 32-byte data keys, each wrapped by the master wrapping key.

``keys/keyring.json`` lists entries ``{key_id, scope, created_at, nonce, wrapped}``. The wrap is
AES-256-GCM with associated data ``key_id|scope``, so an entry cannot be relabelled to another
scope. Scopes: ``day:YYYY-MM-DD`` (a day's partition and quarantine), ``epoch:<n>`` (pseudonym
epoch key), ``register``, ``labels``, ``derived:<name>``. Removing an entry (with an atomic
rewrite of the file) is a cryptographic erase of everything encrypted under that key.

Every mutation holds an exclusive ``fcntl.flock`` on ``keys/keyring.lock`` from the re-read of
the file to the rename of its replacement, so two handles (in one process or many: a training
worker writing a feature cache while an ingest adds day keys) never lose each other's changes
and a destroyed key is never written back. Holding that lock, :meth:`Keyring.remove_temp_files`
erases the temp files an interrupted rewrite left in ``keys/`` (they hold wrapped keys, possibly
of a day purged since); every store open calls it.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from privacy.aead import SealedBlobError, unwrap_key, wrap_key
from retention.store_errors import StoreIOError
from safefiles.atomic import (
    UnsafeFileError,
    atomic_write_bytes,
    read_regular_file,
    remove_file,
    stale_temp_files,
)

KEYRING_VERSION = 1
LOCK_NAME = "keyring.lock"
DATA_KEY_BYTES = 32


class KeyringError(Exception):
    """The keyring file is missing, malformed or does not authenticate."""


class MissingKeyError(KeyringError):
    """A key id is not (or no longer) in the keyring: what it encrypted is unrecoverable."""


@dataclass(frozen=True)
class KeyEntry:
    """One wrapped data key (public fields only; the key stays wrapped)."""

    key_id: str
    scope: str
    created_at: str


def day_scope(day: date) -> str:
    """The keyring scope of a day's data key."""
    return f"day:{day.isoformat()}"


def epoch_scope(epoch: int) -> str:
    """The keyring scope of a pseudonym epoch key."""
    return f"epoch:{epoch}"


def derived_scope(name: str) -> str:
    """The keyring scope of a derived artifact's key."""
    return f"derived:{name}"


def _new_key_id(scope: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in scope)[:60]
    return f"{safe}-{secrets.token_hex(6)}"


class Keyring:
    """Wrapped data keys of one store; see the module docstring."""

    FILE_NAME = "keyring.json"

    def __init__(self, path: Path, wrapping_key: bytes) -> None:
        self.path = Path(path)
        self._wrapping_key = wrapping_key
        self._entries: dict[str, dict[str, Any]] = {}
        self._cache: dict[str, bytes] = {}
        self._lock_depth = 0
        self._lock_fd = -1
        self.reload()

    def __repr__(self) -> str:
        return f"Keyring({str(self.path)!r}, {len(self._entries)} keys)"

    @classmethod
    def create(cls, path: Path, wrapping_key: bytes) -> Keyring:
        """Write an empty keyring file and open it."""
        atomic_write_bytes(path, _dump([]))
        return cls(path, wrapping_key)

    @property
    def can_unwrap(self) -> bool:
        """Whether this handle holds the wrapping key (a purge-only handle does not)."""
        return bool(self._wrapping_key)

    def reload(self) -> None:
        """Re-read the keyring file (drops unwrapped keys of entries that are gone)."""
        try:
            data = json.loads(read_regular_file(self.path).decode("utf-8"))
            entries = data["keys"]
            if data.get("version") != KEYRING_VERSION or not isinstance(entries, list):
                raise ValueError
            self._entries = {str(e["key_id"]): dict(e) for e in entries}
        except FileNotFoundError:
            raise KeyringError(f"keyring {self.path} is missing") from None
        except (OSError, ValueError, KeyError, TypeError):
            raise KeyringError(f"keyring {self.path} is unreadable or malformed") from None
        self._cache = {k: v for k, v in self._cache.items() if k in self._entries}

    def _save(self) -> None:
        assert self._lock_depth, "keyring rewrites hold the keyring lock"
        try:
            atomic_write_bytes(self.path, _dump(list(self._entries.values())))
        except OSError as exc:
            if isinstance(exc, UnsafeFileError):
                raise
            raise StoreIOError(self.path, exc) from None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the keyring's exclusive lock (re-entrant within this handle); re-reads the file.

        Blocks until another holder (handle or process) is done: keyring rewrites are short.
        """
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        fd = os.open(self.path.parent / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_fd, self._lock_depth = fd, 1
            try:
                self.reload()
                yield
            finally:
                self._lock_depth, self._lock_fd = 0, -1
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def remove_temp_files(self) -> int:
        """Erase temp files an interrupted rewrite left in the keys folder; returns how many.

        They can hold wrapped keys that have since been destroyed (a purged day's), so every
        store open calls this, under the keyring lock (no rewrite is in flight then).
        """
        with self.locked():
            stale = stale_temp_files(self.path.parent)
            for p in stale:
                remove_file(p)
        return len(stale)

    # --- queries ---------------------------------------------------------------------------

    def entries(self) -> list[KeyEntry]:
        """Every entry's public fields, in creation order."""
        return [KeyEntry(e["key_id"], e["scope"], e["created_at"]) for e in self._entries.values()]

    def has_key(self, key_id: str) -> bool:
        """Whether ``key_id`` is still in the keyring."""
        return key_id in self._entries

    def scope_of(self, key_id: str) -> str:
        """The scope of ``key_id``; :class:`MissingKeyError` if it was destroyed.

        An id this handle has not seen is looked up again in the file first: another process
        (a training worker writing a feature cache, say) may have added it since.
        """
        if key_id not in self._entries:
            self.reload()
        try:
            return str(self._entries[key_id]["scope"])
        except KeyError:
            raise MissingKeyError(f"key {key_id} is not in the keyring (destroyed?)") from None

    def key_ids_for_scope(self, scope: str) -> list[str]:
        """Key ids with exactly this scope, oldest first."""
        return [k for k, e in self._entries.items() if e["scope"] == scope]

    def key_ids_for_day(self, day: date) -> list[str]:
        """Key ids that encrypt data of ``day`` (its partition and quarantine)."""
        return self.key_ids_for_scope(day_scope(day))

    def unwrap(self, key_id: str) -> bytes:
        """The 32-byte data key; :class:`MissingKeyError` if destroyed."""
        if key_id in self._cache:
            return self._cache[key_id]
        if key_id not in self._entries:
            self.reload()
        e = self._entries.get(key_id)
        if e is None:
            raise MissingKeyError(f"key {key_id} is not in the keyring (destroyed?)")
        try:
            key = unwrap_key(
                self._wrapping_key,
                base64.b64decode(e["nonce"]),
                base64.b64decode(e["wrapped"]),
                _aad(key_id, e["scope"]),
            )
        except (SealedBlobError, ValueError):
            raise KeyringError(f"key {key_id} in {self.path} failed authentication") from None
        self._cache[key_id] = key
        return key

    def key_for_scope(self, scope: str, create: bool = False) -> tuple[str, bytes]:
        """The newest key of ``scope`` as ``(key_id, key)``; make one if ``create``."""
        ids = self.key_ids_for_scope(scope)
        if not ids:
            if not create:
                raise MissingKeyError(f"no key for scope {scope} in the keyring")
            return self.new_key(scope)
        return ids[-1], self.unwrap(ids[-1])

    # --- mutations -------------------------------------------------------------------------

    def new_key(self, scope: str, key: bytes | None = None) -> tuple[str, bytes]:
        """Add a fresh random key for ``scope`` (atomic rewrite); returns ``(key_id, key)``."""
        with self.locked():
            key_id, key = self._add(scope, key)
            self._save()
        return key_id, key

    def _add(self, scope: str, key: bytes | None = None) -> tuple[str, bytes]:
        """Wrap ``key`` (a fresh random one by default) into a new in-memory entry of ``scope``."""
        key = key if key is not None else secrets.token_bytes(DATA_KEY_BYTES)
        key_id = _new_key_id(scope)
        nonce, wrapped = wrap_key(self._wrapping_key, key, _aad(key_id, scope))
        self._entries[key_id] = {
            "key_id": key_id,
            "scope": scope,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "nonce": base64.b64encode(nonce).decode("ascii"),
            "wrapped": base64.b64encode(wrapped).decode("ascii"),
        }
        self._cache[key_id] = key
        return key_id, key

    def ensure_scopes(self, scopes: list[str]) -> list[str]:
        """Create a key for every scope in ``scopes`` that has none, in one atomic rewrite.

        Returns the new key ids. Ingest calls this before writing a batch of day partitions so
        the keyring is rewritten (and fsynced) once per batch, not once per day.
        """
        with self.locked():
            have = {e["scope"] for e in self._entries.values()}
            created: list[str] = []
            for scope in dict.fromkeys(scopes):
                if scope in have:
                    continue
                key_id, _ = self._add(scope)
                created.append(key_id)
            if created:
                self._save()
        return created

    def destroy(self, key_id: str) -> bool:
        """Remove ``key_id`` (atomic rewrite): a cryptographic erase. Returns whether it existed."""
        with self.locked():
            existed = self._entries.pop(key_id, None) is not None
            self._cache.pop(key_id, None)
            if existed:
                self._save()
        return existed

    def destroy_many(self, key_ids: list[str]) -> list[str]:
        """Remove several keys in one atomic rewrite; returns the ids that existed.

        (Added for the purge: one rewrite per batch instead of one per key.)
        """
        with self.locked():
            gone = [k for k in dict.fromkeys(key_ids) if self._entries.pop(k, None) is not None]
            for k in key_ids:
                self._cache.pop(k, None)
            if gone:
                self._save()
        return gone


def _aad(key_id: str, scope: str) -> bytes:
    return f"anprfed/v1/keyring|{key_id}|{scope}".encode()


def _dump(entries: list[dict[str, Any]]) -> bytes:
    # Compact separators keep json on its C encoder: an indented dump of a 730-key ring took
    # ~30 ms, and ingest rewrites the ring whenever it adds day keys.
    return json.dumps({"version": KEYRING_VERSION, "keys": entries}, separators=(",", ":")).encode(
        "utf-8"
    )
