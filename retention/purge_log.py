"""The tamper-evident purge log: append-only, hash-chained, Ed25519-signed JSON lines.

Files (inside ``STORE/logs/``):

``purge.jsonl``
    One entry per line, canonical JSON (sorted keys, no spaces, ASCII) with the fields
    ``seq`` (1, 2, ...), ``prev_hash`` (SHA-256 hex of the previous line's bytes; 64 zeros for
    the first), ``type`` (``intent`` / ``commit``), ``payload``, ``timestamp`` (UTC ISO-8601),
    ``tool_version`` and ``signature`` (base64 Ed25519 over the domain-separated canonical bytes
    of the entry without ``signature``).
``purge.head``
    A signed record of the last entry (``seq`` and ``hash``), rewritten atomically after each
    append and created (``seq`` 0) before the first one. Deleting lines at the end of the log no
    longer leaves a valid-looking shorter chain: the head still names the lost entry.

:func:`verify_log` detects an edited entry (signature and chain), a deleted entry (seq gap and
chain), a reordering (seq and chain) and a truncated tail (head). The one benign mismatch is a
head exactly one validly-signed entry behind the log, the trace of a crash between appending and
updating the head; it is reported as a warning and repaired by the next append.
What it cannot detect without an outside anchor: a replay of an older copy of *both* files.
Publish the head (``anprfed retention status --json``) elsewhere to close that gap.

The log records only days, counts, bytes, key ids and the policy: never a VRM or a pseudonym.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from safefiles.atomic import (
    PRIVATE_DIR_MODE,
    append_bytes,
    atomic_write_bytes,
    make_dirs,
    read_regular_file,
)

LOG_DIR_NAME = "logs"
LOG_FILE_NAME = "purge.jsonl"
HEAD_FILE_NAME = "purge.head"
GENESIS_HASH = "0" * 64
ENTRY_DOMAIN = b"anprfed/purge-log/entry/v1\n"
HEAD_DOMAIN = b"anprfed/purge-log/head/v1\n"
ENTRY_FIELDS = frozenset(
    {"seq", "prev_hash", "type", "payload", "timestamp", "tool_version", "signature"}
)


class PurgeLogError(RuntimeError):
    """The purge log cannot be appended to because it is damaged or does not verify."""


def canonical_bytes(obj: dict[str, Any]) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, ASCII only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def line_hash(line: bytes) -> str:
    """SHA-256 hex digest of one log line (without its newline)."""
    return hashlib.sha256(line).hexdigest()


def _sign(key: Ed25519PrivateKey, domain: bytes, body: dict[str, Any]) -> str:
    return base64.b64encode(key.sign(domain + canonical_bytes(body))).decode("ascii")


def _signature_ok(key: Ed25519PublicKey, domain: bytes, record: dict[str, Any]) -> bool:
    signature = record.get("signature")
    if not isinstance(signature, str):
        return False
    body = {k: v for k, v in record.items() if k != "signature"}
    try:
        key.verify(base64.b64decode(signature, validate=True), domain + canonical_bytes(body))
    except (InvalidSignature, ValueError):
        return False
    return True


def _complete_entry(tail: bytes) -> bool:
    """Whether a newline-less tail is a whole entry (its newline lost), not a torn append."""
    try:
        rec = json.loads(tail)
    except ValueError:
        return False
    return isinstance(rec, dict) and set(rec) == ENTRY_FIELDS and canonical_bytes(rec) == tail


def _now_iso(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class LogEntry:
    """One parsed log line and its hash."""

    seq: int
    type: str
    payload: dict[str, Any]
    timestamp: str
    tool_version: str
    prev_hash: str
    hash: str
    line_no: int


@dataclass
class VerifyReport:
    """The outcome of :func:`verify_log`: ``ok`` is False on any sign of tampering."""

    ok: bool
    entries: int
    head_seq: int | None
    last_hash: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head_seq": self.head_seq,
            "last_hash": self.last_hash,
            "problems": self.problems,
            "warnings": self.warnings,
        }


class PurgeLog:
    """Read and append the purge log of one store. Appends must hold the store lock."""

    def __init__(self, store_root: Path) -> None:
        self.dir = Path(store_root) / LOG_DIR_NAME
        self.path = self.dir / LOG_FILE_NAME
        self.head_path = self.dir / HEAD_FILE_NAME

    # -- reading -------------------------------------------------------------------------
    def _raw_lines(self) -> tuple[list[bytes], bytes]:
        """Complete lines and any torn (newline-less) tail.

        A tail that is a whole canonical entry (only its newline missing) counts as a line: it
        is verified like any other and never trimmed."""
        try:
            data = read_regular_file(self.path)
        except FileNotFoundError:
            return [], b""
        *complete, tail = data.split(b"\n")
        if tail and _complete_entry(tail):
            return [*complete, tail], b""
        return complete, tail

    def _missing_newline(self) -> bool:
        try:
            data = read_regular_file(self.path)
        except FileNotFoundError:
            return False
        return bool(data) and not data.endswith(b"\n")

    def entries(self) -> list[LogEntry]:
        """Parse every complete line, without verifying signatures. Raises on malformed lines."""
        out: list[LogEntry] = []
        lines, _ = self._raw_lines()
        for i, line in enumerate(lines, start=1):
            try:
                rec = json.loads(line)
                out.append(
                    LogEntry(
                        seq=int(rec["seq"]),
                        type=str(rec["type"]),
                        payload=dict(rec["payload"]),
                        timestamp=str(rec["timestamp"]),
                        tool_version=str(rec.get("tool_version", "")),
                        prev_hash=str(rec["prev_hash"]),
                        hash=line_hash(line),
                        line_no=i,
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise PurgeLogError(f"{self.path}: line {i} is not a valid log entry") from exc
        return out

    def read_head(self) -> dict[str, Any] | None:
        """The head record, or None if there is none."""
        try:
            head = json.loads(read_regular_file(self.head_path))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise PurgeLogError(f"{self.head_path}: not valid JSON") from exc
        if not isinstance(head, dict):
            raise PurgeLogError(f"{self.head_path}: not a JSON object")
        return head

    # -- writing -------------------------------------------------------------------------
    def _write_head(self, seq: int, last_hash: str, key: Ed25519PrivateKey) -> None:
        body = {"hash": last_hash, "seq": seq, "updated_at": _now_iso(None)}
        body["signature"] = _sign(key, HEAD_DOMAIN, body)
        atomic_write_bytes(self.head_path, canonical_bytes(body) + b"\n")

    def _prepare_for_append(self, key: Ed25519PrivateKey) -> tuple[int, str]:
        """Check the log is intact, repair crash residue, and return (last seq, last hash)."""
        make_dirs(self.dir, PRIVATE_DIR_MODE)
        lines, tail = self._raw_lines()
        head = self.read_head()
        if tail:
            # An append torn by a crash: only ever the bytes after the last newline, and never
            # a whole entry (that is a lost newline, restored below). Only trimmed when the
            # rest verifies, so nothing the head vouches for can be cut.
            report = verify_log(self.dir.parent, key.public_key())
            if not report.ok:
                raise PurgeLogError(
                    "purge log does not verify; refusing to trim or append: "
                    + "; ".join(report.problems)
                )
            fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW)
            try:
                os.ftruncate(fd, sum(len(line) + 1 for line in lines))
                os.fsync(fd)
            finally:
                os.close(fd)
        elif self._missing_newline():
            append_bytes(self.path, b"\n")
        if head is None and not lines:
            self._write_head(0, GENESIS_HASH, key)
            return 0, GENESIS_HASH
        report = verify_log(self.dir.parent, key.public_key())
        if not report.ok:
            raise PurgeLogError(
                "purge log does not verify; refusing to append: " + "; ".join(report.problems)
            )
        if report.head_seq != report.entries:
            self._write_head(report.entries, report.last_hash, key)
        return report.entries, report.last_hash

    def recover(self, key: Ed25519PrivateKey) -> None:
        """Repair crash residue (torn last line, head one entry behind); hold the store lock.

        Raises :class:`PurgeLogError` if the log does not verify. No-op for a store without a log.
        """
        if self.path.exists() or self.head_path.exists():
            self._prepare_for_append(key)

    def append(
        self,
        entry_type: str,
        payload: dict[str, Any],
        key: Ed25519PrivateKey,
        tool_version: str,
        now: datetime | None = None,
    ) -> LogEntry:
        """Append one signed entry (fsync'd) and then update the signed head atomically."""
        seq, prev = self._prepare_for_append(key)
        body: dict[str, Any] = {
            "payload": payload,
            "prev_hash": prev,
            "seq": seq + 1,
            "timestamp": _now_iso(now),
            "tool_version": tool_version,
            "type": entry_type,
        }
        body["signature"] = _sign(key, ENTRY_DOMAIN, body)
        line = canonical_bytes(body)
        append_bytes(self.path, line + b"\n")
        digest = line_hash(line)
        self._write_head(seq + 1, digest, key)
        return LogEntry(
            seq=seq + 1,
            type=entry_type,
            payload=payload,
            timestamp=body["timestamp"],
            tool_version=tool_version,
            prev_hash=prev,
            hash=digest,
            line_no=seq + 1,
        )


def verify_log(store_root: Path, public_key: Ed25519PublicKey) -> VerifyReport:
    """Check chain, seq continuity, every signature and the signed head of a store's log."""
    log = PurgeLog(store_root)
    problems: list[str] = []
    warnings: list[str] = []
    lines, tail = log._raw_lines()
    if not tail and log._missing_newline():
        warnings.append("the last entry lacks its final newline; the next purge restores it")
    prev = GENESIS_HASH
    hashes: list[str] = []
    for i, line in enumerate(lines, start=1):
        digest = line_hash(line)
        hashes.append(digest)
        try:
            rec = json.loads(line)
        except ValueError:
            problems.append(f"line {i}: not valid JSON")
            prev = digest
            continue
        if not isinstance(rec, dict) or set(rec) != ENTRY_FIELDS:
            problems.append(f"line {i}: unexpected fields")
            prev = digest
            continue
        if canonical_bytes(rec) != line:
            problems.append(f"line {i}: not in canonical form (edited)")
        if rec["seq"] != i:
            problems.append(f"line {i}: seq {rec['seq']!r}, expected {i} (deleted or reordered)")
        if rec["prev_hash"] != prev:
            what = "the genesis value" if i == 1 else f"the hash of line {i - 1}"
            problems.append(f"line {i}: prev_hash is not {what} (chain broken)")
        if not _signature_ok(public_key, ENTRY_DOMAIN, rec):
            problems.append(f"line {i}: bad signature (edited or forged)")
        prev = digest

    head_seq: int | None = None
    try:
        head = log.read_head()
    except PurgeLogError as exc:
        problems.append(str(exc))
        head = None
    n = len(lines)
    if head is None:
        if n:
            problems.append("head record missing while the log has entries")
    elif not _signature_ok(public_key, HEAD_DOMAIN, head):
        problems.append("head record has a bad signature")
    else:
        head_seq = head.get("seq") if isinstance(head.get("seq"), int) else None
        head_hash = head.get("hash")
        if head_seq is None or head_seq < 0:
            problems.append("head record has no valid seq")
        elif head_seq > n:
            problems.append(
                f"head names entry {head_seq} but the log has only {n} line(s): "
                f"{head_seq - n} entry(ies) missing (tail truncated or entries deleted)"
            )
        else:
            expected = GENESIS_HASH if head_seq == 0 else hashes[head_seq - 1]
            if head_hash != expected:
                problems.append(f"head hash does not match entry {head_seq}")
            elif head_seq == n - 1:
                warnings.append(
                    f"head is one entry behind (entry {n} appended, head not yet updated: "
                    "interrupted append); the next purge repairs it"
                )
            elif head_seq < n:
                problems.append(f"head names entry {head_seq} but the log has {n} entries")
    if tail:
        where = f"line {n + 1}: incomplete last line"
        if head_seq is not None and head_seq >= n - 1 and not problems:
            # Bytes after everything the head vouches for: an interrupted append.
            warnings.append(f"{where} (interrupted append); the next purge removes it")
        else:
            problems.append(f"{where} (torn or edited tail)")
    return VerifyReport(
        ok=not problems,
        entries=n,
        head_seq=head_seq,
        last_hash=hashes[-1] if hashes else GENESIS_HASH,
        problems=problems,
        warnings=warnings,
    )
