"""Why keyed hashing matters: reversing unkeyed MD5 VRM pseudonyms by enumerating the plates.

The founding project "encrypted" VRMs with MD5. MD5 has no key, so anyone holding a pseudonym
hashes every possible UK plate (about 1.37e9 marks, ``privacy.plates``) and looks the
pseudonym up. This module does exactly that, on synthetic plates, and measures it:

1. draw ``sample`` synthetic plates: with the synthetic world's format mix (mostly current
   marks, only age identifiers already issued), or uniformly from a reduced subspace if
   ``prefix`` is given;
2. pseudonymise them twice: unkeyed MD5 of the normalised mark (the founding method) and this
   project's keyed pseudonym (HMAC-SHA256 under a fresh 256-bit key, then AES under a 256-bit
   epoch key, ``privacy.pseudonym``);
3. enumerate the plate space format by format (current first), hashing candidates with the
   numpy MD5 (``md5_vector``) in worker processes, until everything is enumerated or
   ``max_seconds`` runs out; match against both pseudonym sets, confirming each hit with
   ``hashlib``;
4. report candidates hashed per second measured here, plates recovered, and the projected time
   for the full space at that rate; for the keyed pseudonyms, the key bits an attacker would
   have to search, the projected time at the HMAC rate measured here, and a trial of the same
   enumeration under a guessed key.

Outputs hold counts, rates and times only: never a plate, even a synthetic one.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa

from privacy.plates import DEFAULT_FORMAT_MIX, FORMATS, normalise_vrm, random_plates
from privacy.pseudonym import KeyedHash, VrmPseudonymiser
from research.audit.md5_vector import BATCH, digest_first64, md5_first64
from research.audit.plate_space import blocks, sample_plates, space_size

KEY_BITS = 256
"""Bits of the pseudonym base key (HMAC-SHA256); the AES epoch key adds another 256."""
SECONDS_PER_YEAR = 365.25 * 86400
TASK_CANDIDATES = 1 << 21
"""Candidates per task handed to a worker process (about a second of work)."""
GUESSED_KEY_TRIAL_CANDIDATES = 1 << 20
MIN_SECONDS_FOR_RUN_RATE = 5.0


def unkeyed_md5(vrm: str) -> str:
    """The founding project's pseudonym: hex MD5 of the normalised mark (no key)."""
    return hashlib.md5(normalise_vrm(vrm).encode("ascii")).hexdigest()


@dataclass(frozen=True)
class _Task:
    fmt: str
    prefix: str
    block: int
    start: int
    stop: int


def _match(
    plates: np.ndarray, keys: np.ndarray, digests: frozenset[bytes]
) -> list[tuple[bytes, str]]:
    """(digest, plate) for rows whose MD5 is a target, each confirmed with ``hashlib``."""
    first = md5_first64(plates)
    pos = np.searchsorted(keys, first)
    pos[pos == len(keys)] = 0
    found = []
    for row in np.flatnonzero(keys[pos] == first):
        text = plates[row].tobytes()
        digest = hashlib.md5(text).digest()
        if digest in digests:
            found.append((digest, text.decode("ascii")))
    return found


def _run_task(task: _Task, keys: np.ndarray, digests: frozenset[bytes]) -> tuple[int, list]:
    """Hash the candidates of one task; returns (candidates, hits)."""
    block = blocks(task.fmt, task.prefix)[task.block]
    hits: list[tuple[bytes, str]] = []
    done = 0
    for plates in block.outer_batches(task.start, task.stop, BATCH):
        hits.extend(_match(plates, keys, digests))
        done += len(plates)
    return done, hits


def _tasks(formats: tuple[str, ...], prefix: str) -> Iterator[_Task]:
    """Tasks of about ``TASK_CANDIDATES`` candidates: ranges of a block's outer prefixes."""
    for fmt in formats:
        for i, block in enumerate(blocks(fmt, prefix)):
            step = max(1, TASK_CANDIDATES // block.inner_size)
            for start in range(0, block.outer_size, step):
                yield _Task(fmt, prefix, i, start, min(start + step, block.outer_size))


@dataclass
class Enumeration:
    """What an enumeration covered and found (digests of recovered targets, not plates)."""

    candidates: int = 0
    seconds: float = 0.0
    complete: bool = False
    recovered: dict[bytes, str] = field(default_factory=dict)
    candidates_by_format: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Candidates hashed and matched per second, over the whole run."""
        return self.candidates / self.seconds if self.seconds > 0 else math.nan


def enumerate_md5(
    targets: list[bytes],
    formats: tuple[str, ...] = FORMATS,
    prefix: str = "",
    max_seconds: float = 60.0,
    workers: int = 1,
) -> Enumeration:
    """Hash every plate of the space (formats, prefix) until done or out of time.

    ``targets`` are 16-byte MD5 digests. With ``workers > 1`` candidates are split across
    processes. Work already handed out when time runs out is finished, so a run can overshoot
    ``max_seconds`` by about one task per worker.
    """
    digests = frozenset(targets)
    keys = np.unique(digest_first64(sorted(digests))) if digests else np.zeros(1, np.uint64)
    result = Enumeration(candidates_by_format={f: 0 for f in formats})
    started = time.perf_counter()

    def account(task: _Task, done: int, hits: list[tuple[bytes, str]]) -> None:
        result.candidates += done
        result.candidates_by_format[task.fmt] += done
        result.recovered.update(hits)

    tasks = _tasks(formats, prefix)
    out_of_time = False
    if workers <= 1:
        for task in tasks:
            if time.perf_counter() - started >= max_seconds:
                out_of_time = True
                break
            account(task, *_run_task(task, keys, digests))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            running: dict[Future, _Task] = {}
            exhausted = False
            while True:
                while not exhausted and not out_of_time and len(running) < workers + 1:
                    if time.perf_counter() - started >= max_seconds:
                        out_of_time = True
                        break
                    task = next(tasks, None)
                    if task is None:
                        exhausted = True
                        break
                    running[pool.submit(_run_task, task, keys, digests)] = task
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    account(running.pop(fut), *fut.result())
    result.seconds = time.perf_counter() - started
    result.complete = not out_of_time and next(tasks, None) is None
    return result


def _rate(work: Callable[[], int], min_seconds: float) -> float:
    """Items per second of ``work`` (repeated until ``min_seconds`` have passed)."""
    done, started = 0, time.perf_counter()
    while True:
        done += work()
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return done / elapsed


def measure_rates(min_seconds: float = 0.5) -> dict[str, float]:
    """Single-process candidates per second: numpy MD5, hashlib MD5 and keyed HMAC-SHA256.

    All three start from the same batch of candidate plates (uint8 rows), so each includes
    the cost of turning a candidate into the hash input.
    """
    block = blocks("current")[0]
    plates = block.plates(0, BATCH)
    hasher = KeyedHash(secrets.token_bytes(32))

    def numpy_md5() -> int:
        md5_first64(plates)
        return len(plates)

    def hashlib_md5() -> int:
        raw = plates.tobytes()
        width = plates.shape[1]
        md5 = hashlib.md5
        _ = [md5(raw[i : i + width]).digest() for i in range(0, len(raw), width)]
        return len(plates)

    def keyed_hmac() -> int:
        raw = plates.tobytes()
        width = plates.shape[1]
        hasher.digest_many(raw[i : i + width] for i in range(0, len(raw), width))
        return len(plates)

    return {
        "md5_numpy_per_s": _rate(numpy_md5, min_seconds),
        "md5_hashlib_per_s": _rate(hashlib_md5, min_seconds),
        "hmac_sha256_per_s": _rate(keyed_hmac, min_seconds),
    }


def _guessed_key_trial(plates: list[str], prefix: str, formats: tuple[str, ...]) -> dict[str, int]:
    """Enumerate candidates under a *guessed* key: the attacker's best move without the key."""
    base, epoch = secrets.token_bytes(32), secrets.token_bytes(32)
    targets = set(
        VrmPseudonymiser(base, epoch).pseudonymise(pa.array(plates, pa.string())).to_pylist()
    )
    guess = VrmPseudonymiser(secrets.token_bytes(32), secrets.token_bytes(32))
    tried = found = 0
    for fmt in formats:
        for block in blocks(fmt, prefix):
            take = min(block.size, GUESSED_KEY_TRIAL_CANDIDATES - tried)
            if take <= 0:
                break
            raw = block.plates(0, take)
            width = raw.shape[1]
            flat = raw.tobytes()
            cand = pa.array(
                [flat[i : i + width].decode("ascii") for i in range(0, len(flat), width)]
            )
            found += len(targets.intersection(guess.pseudonymise_unique(cand).to_pylist()))
            tried += take
    return {"candidates": tried, "recovered": found}


@dataclass
class ReidReport:
    """The demonstration's figures (JSON-ready via :meth:`to_dict`)."""

    sample: int
    formats: list[str]
    prefix: str
    subspace_size: int
    full_space_size: int
    full_space_by_format: dict[str, int]
    workers: int
    max_seconds: float
    rates_single_process: dict[str, float]
    md5: dict[str, Any]
    keyed: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``reid.json``."""
        return asdict(self)


def run_demo(
    sample: int = 20,
    *,
    prefix: str = "",
    formats: tuple[str, ...] = FORMATS,
    max_seconds: float = 120.0,
    workers: int | None = None,
    seed: int | None = None,
    rate_seconds: float = 0.5,
) -> ReidReport:
    """Run the whole demonstration (see the module docstring) and return its figures."""
    if sample < 1:
        raise ValueError("--sample must be at least 1")
    if max_seconds <= 0:
        raise ValueError("--max-seconds must be positive")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown plate format(s) {unknown}; expected some of {list(FORMATS)}")
    prefix = normalise_vrm(prefix)
    sub_size = space_size(tuple(formats), prefix)
    if sub_size == 0:
        raise ValueError(f"no UK plate of format(s) {list(formats)} starts with that prefix")
    workers = max(1, os.cpu_count() or 1) if workers is None else max(1, workers)
    rng = np.random.default_rng(seed)
    if prefix:  # uniform over the reduced subspace
        plates = sample_plates(rng, min(sample, sub_size), tuple(formats), prefix)
    else:  # the synthetic world's fleet: mostly current marks, only age identifiers issued
        mix = {f: DEFAULT_FORMAT_MIX[f] for f in formats}
        plates = [str(p) for p in random_plates(rng, sample, mix, as_of=date.today())]
    md5_targets = [hashlib.md5(p.encode("ascii")).digest() for p in plates]
    keyed = VrmPseudonymiser(secrets.token_bytes(32), secrets.token_bytes(32))
    keyed_targets = [bytes.fromhex(h) for h in keyed.pseudonymise(pa.array(plates)).to_pylist()]

    rates = measure_rates(rate_seconds)
    run = enumerate_md5(md5_targets + keyed_targets, tuple(formats), prefix, max_seconds, workers)
    md5_set, keyed_set = set(md5_targets), set(keyed_targets)
    recovered_md5 = sum(1 for d in run.recovered if d in md5_set)
    recovered_keyed = sum(1 for d in run.recovered if d in keyed_set)
    correct = all(
        hashlib.md5(plate.encode("ascii")).digest() == d for d, plate in run.recovered.items()
    )
    full = space_size(FORMATS, "")
    by_format = {f: space_size((f,), "") for f in FORMATS}
    # Project from the run's own rate when it ran long enough to be sustained; a short run
    # on a small subspace is dominated by start-up, so use the single-process rate instead.
    sustained = run.seconds >= MIN_SECONDS_FOR_RUN_RATE
    rate = run.rate if sustained else rates["md5_numpy_per_s"]
    hmac_rate = rates["hmac_sha256_per_s"]
    # log10 of the expected years to find the key: half the key space, each key tried
    # against the whole plate space.
    log10_years = (
        (KEY_BITS - 1) * math.log10(2)
        + math.log10(full)
        - math.log10(hmac_rate * workers)
        - math.log10(SECONDS_PER_YEAR)
    )
    return ReidReport(
        sample=len(plates),
        formats=list(formats),
        prefix=prefix,
        subspace_size=sub_size,
        full_space_size=full,
        full_space_by_format=by_format,
        workers=workers,
        max_seconds=max_seconds,
        rates_single_process=rates,
        md5={
            "method": "hex MD5 of the normalised mark, no key (the founding project)",
            "candidates_hashed": run.candidates,
            "candidates_by_format": run.candidates_by_format,
            "seconds": run.seconds,
            "hashes_per_second": run.rate,
            "projection_rate_per_second": rate,
            "projection_basis": "this run" if sustained else "single-process measurement",
            "subspace_complete": run.complete,
            "recovered": recovered_md5,
            "recovered_share": recovered_md5 / len(plates),
            "recovered_verified_with_hashlib": correct,
            "projected_full_space_seconds": full / rate if rate > 0 else math.inf,
            "projected_by_format_seconds": {f: n / rate for f, n in by_format.items()},
        },
        keyed={
            "method": "AES-256(epoch key, HMAC-SHA256(base key, normalised mark)[:16])",
            "key_bits": KEY_BITS,
            "epoch_key_bits": 256,
            "recovered_by_md5_enumeration": recovered_keyed,
            "guessed_key_trial": _guessed_key_trial(plates, prefix, tuple(formats)),
            "hmac_per_second": hmac_rate,
            "log10_expected_years_to_find_key": log10_years,
            "infeasible": True,
        },
    )
