"""Audit probes: Dirac gradient canaries added inside a force's DP-SGD step (audits only).

The white-box audit of DP-SGD in the literature (Nasr et al. 2023; Steinke, Nasr and Jagielski
2023) inserts *gradient canaries*: a canary is a vector ``C * e_j`` (``C`` = the clipping norm,
``e_j`` one coordinate of the flat parameter vector), i.e. an already-clipped per-example
gradient that no real vehicle produces. An audit gives each canary its own coordinate and
includes it with probability 1/2; the force then treats each included canary like one more
vehicle: in every DP-SGD step it is Poisson-sampled at the step's sample rate and, when
sampled, its vector is added to the **sum of clipped per-vehicle gradients before Opacus adds
the noise and scales** (at the start of ``DPOptimizer.add_noise``, which runs once per noised
step: a step Opacus skips to accumulate a virtual batch adds no canary). The
probe is data-independent and has the sensitivity of one vehicle, so the round's DP guarantee
(for real vehicles and for each canary) is exactly the one its ledger records; everything else
-- Opacus's optimizer, the ledger, the noise calibration, ``train_round`` and
``local_train`` -- is the force's own code.

Gating. A deployed force must not be steerable into running probes, so:

* the probe set is a **derived artifact of the force's own store** (:data:`PROBE_ARTIFACT`,
  written with :func:`write_probes` through the store's API: encrypted, MAC'd manifest); a file
  planted by a local user without the store key fails authentication and the round is refused;
* it is used only when the force's **own privacy policy** sets ``allow-audit-probes`` (which
  itself requires ``allow-simulation-settings``; the default and the simulation policies leave
  it off; only the canary audit's scratch copy turns it on) and only under a simulation ledger
  scope. A store that holds probes under a policy that does not allow them refuses to train;
* nothing in the run config can enable, name or alter probes (there is no such key, and unknown
  run-config keys are refused by ``FlowerSettings``).

The artifact holds only the coordinates of the *included* canaries; which canaries exist and
their inclusion coins stay with the auditor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

PROBE_ARTIFACT = "audit-gradient-canaries"
"""Name of the store's derived artifact holding the included canaries' coordinates."""


class ProbeError(RuntimeError):
    """An audit-probe set that cannot be used (bad coordinates, unsupported mode)."""


@dataclass(frozen=True)
class GradientCanaries:
    """The included Dirac canaries of one audit: distinct flat parameter coordinates."""

    coordinates: np.ndarray  # int64, distinct, flat indices in the model's parameter order

    def __post_init__(self) -> None:
        c = np.asarray(self.coordinates)
        if c.ndim != 1 or not np.issubdtype(c.dtype, np.integer):
            raise ProbeError("canary coordinates must be a 1-D array of integers")
        if len(np.unique(c)) != len(c) or (len(c) and c.min() < 0):
            raise ProbeError("canary coordinates must be distinct and non-negative")

    def __len__(self) -> int:
        return len(self.coordinates)

    def split(self, sizes: Sequence[int]) -> list[tuple[int, np.ndarray]]:
        """``(parameter index, offsets)`` pairs for parameters of ``sizes`` (flat order)."""
        total = int(sum(sizes))
        c = np.asarray(self.coordinates, np.int64)
        if len(c) and c.max() >= total:
            raise ProbeError(f"a canary coordinate is beyond the model's {total} parameters")
        out, start = [], 0
        for index, size in enumerate(sizes):
            mine = c[(c >= start) & (c < start + size)] - start
            if len(mine):
                out.append((index, mine))
            start += size
        return out


def write_probes(store: object, canaries: GradientCanaries) -> None:
    """Write ``canaries`` into ``store`` as the derived artifact :data:`PROBE_ARTIFACT`.

    For an audit's scratch copy of a store; a force whose policy does not allow audit probes
    refuses to train while the artifact exists.
    """
    table = pa.table({"coordinate": pa.array(np.asarray(canaries.coordinates, np.int64))})
    store.write_derived(PROBE_ARTIFACT, table, [])  # type: ignore[attr-defined]


def has_probes(store: object) -> bool:
    """Whether ``store`` holds an audit-probe artifact (authenticated or not)."""
    return any(a.name == PROBE_ARTIFACT for a in store.derived_artifacts())  # type: ignore[attr-defined]


def read_probes(store: object) -> GradientCanaries:
    """The store's probe set (authenticated and decrypted by the store; raises if planted)."""
    table = store.read_derived(PROBE_ARTIFACT)  # type: ignore[attr-defined]
    if table.column_names != ["coordinate"]:
        raise ProbeError(f"audit-probe artifact has columns {table.column_names}")
    return GradientCanaries(np.asarray(table.column("coordinate").to_numpy(), np.int64))


def attach(
    optimizer: torch.optim.Optimizer,
    canaries: GradientCanaries,
    *,
    sample_rate: float,
    generator: torch.Generator,
) -> Callable[[], int]:
    """Make ``optimizer`` (an Opacus ``DPOptimizer``) add the canaries in every step.

    In every noised step, just before Opacus adds its noise to the clipped, summed
    per-vehicle gradients, each canary is included with probability ``sample_rate`` (its own
    Poisson draw from ``generator``) and, if so, adds ``max_grad_norm`` to its coordinate of
    the sum; Opacus then adds its noise and scales as usual. Hooking the noise (not the
    clipping, which also runs on steps Opacus skips to accumulate a virtual batch) keeps each
    canary at one clipped vehicle's norm per noised step. Returns a function giving the number
    of canary samples added so far.
    """
    params = list(getattr(optimizer, "params", []))
    add_noise = getattr(optimizer, "add_noise", None)
    if not params or add_noise is None or not hasattr(optimizer, "clip_and_accumulate"):
        raise ProbeError("audit probes need an Opacus DPOptimizer")
    if type(optimizer).__name__ != "DPOptimizer":
        name = type(optimizer).__name__
        raise ProbeError(f"audit probes support Opacus's DPOptimizer (hooks mode), not {name}")
    parts = [
        (params[i], torch.from_numpy(offsets))
        for i, offsets in canaries.split([p.numel() for p in params])
    ]
    value = float(optimizer.max_grad_norm)  # type: ignore[attr-defined]
    added = [0]

    def canaries_then_noise() -> None:
        for p, offsets in parts:
            keep = torch.rand(len(offsets), generator=generator) < sample_rate
            if not bool(keep.any()):
                continue
            delta = torch.zeros(p.numel(), dtype=p.dtype)
            delta[offsets[keep]] = value
            p.summed_grad = p.summed_grad + delta.view_as(p.summed_grad)
            added[0] += int(keep.sum())
        add_noise()

    optimizer.add_noise = canaries_then_noise  # type: ignore[method-assign]
    return lambda: added[0]
