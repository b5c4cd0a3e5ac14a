"""The registry of study designs: a design is one module plus one ``register_design`` call.

In the spirit of Opacus's ``accountants/registry.py``: the runner, the spec's validation and
the plots look designs up here by name instead of in ``if design == ...`` chains. A design says
how it trains (``train``), whether it runs under DP at every epsilon of the sweep or once
non-private, whether the runner must keep its model for the audits (a server-run design keeps
its own), and its colour in the plots.

The built-in designs (``local-only``, ``federated``, ``pooled``) register themselves when
``research.study.designs`` is imported. A new design::

    # research/study/designs/my_design.py
    from research.study.designs.registry import Design, DesignContext, register_design

    def _train(ctx: DesignContext) -> list[np.ndarray]:
        ...

    register_design(Design("my-design", _train, colour="#e7298a", private=True))

and one import line in ``research/study/designs/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the runner's resources; imported for type hints only
    from rich.progress import Progress

    from federation.flower_settings import FlowerSettings
    from research.study.spec import StudySpec

Weights = list[np.ndarray] | dict[str, list[np.ndarray]]


class UnknownDesignError(KeyError):
    """No design is registered under this name; the message lists the known ones."""


@dataclass
class DesignContext:
    """What a design's ``train`` gets at one sweep point.

    ``nodes`` are the study's forces (``client_force.simulated_force.SimulatedForce``) with
    their stores purged to the sweep point's retention window; ``settings`` are the Flower
    settings every force and the server apply; ``resources`` are the runner's shared, lazily
    started helpers (``local_workers``: a process pool; ``ray_cluster``: the study's Ray head).
    """

    nodes: list[Any]
    settings: FlowerSettings
    study_id: str
    spec: StudySpec
    progress: Progress | None = None
    local_workers: Any = None
    ray_cluster: Any = None


@dataclass(frozen=True)
class Design:
    """One study design.

    ``train(ctx)`` returns one weight list (a shared model) or a dict of weight lists by force
    name (one model per force). ``private``: trained under DP, once per epsilon of the sweep
    (else once per retention window, non-private). ``keeps_own_checkpoint``: the design's run
    already wrote ``checkpoints/final.npz`` (the federated server does); otherwise the runner
    saves the model for the audits. ``needs_ray``: the runner starts its Ray head node first.
    ``uses_force_data``: False for a reference made without any force's data (its epsilon
    column reads "none").
    """

    name: str
    train: Callable[[DesignContext], Weights]
    colour: str = "grey"
    private: bool = True
    keeps_own_checkpoint: bool = False
    needs_ray: bool = False
    deployable: bool = True
    uses_force_data: bool = True  # False: a reference made without any force's data
    description: str = ""


_DESIGNS: dict[str, Design] = {}


def register_design(design: Design, *, replace: bool = False) -> Design:
    """Add ``design`` to the registry; refuses a second design of the same name unless
    ``replace``."""
    if not design.name or not all(c.isalnum() or c == "-" for c in design.name):
        raise ValueError(f"design name {design.name!r}: use letters, digits and '-'")
    if design.name in _DESIGNS and not replace:
        raise ValueError(f"a design named {design.name!r} is already registered")
    _DESIGNS[design.name] = design
    return design


def unregister_design(name: str) -> None:
    """Remove a design (tests register toy designs and take them out again)."""
    _DESIGNS.pop(name, None)


def get_design(name: str) -> Design:
    """The registered design ``name``; ``UnknownDesignError`` naming the known ones."""
    try:
        return _DESIGNS[name]
    except KeyError:
        raise UnknownDesignError(
            f"unknown design {name!r}; registered: {', '.join(_DESIGNS)}"
        ) from None


def design_names() -> tuple[str, ...]:
    """Registered design names, in registration order."""
    return tuple(_DESIGNS)


def uses_force_data(name: str) -> bool:
    """False for a registered reference made without any force's data (``public-start``)."""
    design = _DESIGNS.get(name)
    return design.uses_force_data if design is not None else True


def design_colour(name: str) -> str:
    """The plots' colour for a design (grey for a name no longer registered)."""
    design = _DESIGNS.get(name)
    return design.colour if design is not None else "grey"
