"""Membership attacks by name: a new attack is one function plus one registration.

In the spirit of Opacus's ``accountants/registry.py``. An attack turns what the audit knows
about the audited model (an :class:`AttackInputs`) into one score per vehicle, higher meaning
"more likely a member"; the audit (``research.audit.membership``) runs every registered attack,
judges each with the same ROC and epsilon bound, names it in its rows and draws it in the ROC
plot with the registered line style. To add one::

    # research/audit/my_attack.py
    from research.audit.registry import AttackInputs, register_attack

    @register_attack("my-attack", line_style="-.")
    def my_attack(inputs: AttackInputs) -> np.ndarray:
        return ...  # one score per vehicle

and import the module once (the built-in attacks are imported by ``research.audit``).
Attacks that need shadow models say so (``needs_shadows=True``); the audit trains shadows
only if some registered attack needs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ScoreFn = Callable[["AttackInputs"], np.ndarray]


@dataclass(frozen=True)
class AttackInputs:
    """What an attack may use: the audited model's outputs and, if trained, the shadows'.

    ``shadow_phi``/``shadow_in`` are ``[K, N]`` (None when no registered attack needs shadows).
    """

    logits: np.ndarray  # the audited model's logit for every vehicle
    labels: np.ndarray  # 0/1 label of every vehicle
    phi: np.ndarray  # logit-scaled confidence of the true label (``attacks.logit_confidence``)
    shadow_phi: np.ndarray | None = None
    shadow_in: np.ndarray | None = None


@dataclass(frozen=True)
class RegisteredAttack:
    """One attack: its name, its score function and how the audit treats it."""

    name: str
    score: ScoreFn
    needs_shadows: bool = False
    line_style: str = "-"
    description: str = ""


_ATTACKS: dict[str, RegisteredAttack] = {}


def register_attack(
    name: str,
    *,
    needs_shadows: bool = False,
    line_style: str = "-",
    description: str = "",
    replace: bool = False,
) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator: register ``fn(inputs) -> scores`` as attack ``name``.

    A second registration of the same name is an error unless ``replace`` (tests).
    """
    if not name or not all(c.isalnum() or c == "-" for c in name):
        raise ValueError(f"attack names are letters, digits and '-'; got {name!r}")

    def decorate(fn: ScoreFn) -> ScoreFn:
        if name in _ATTACKS and not replace:
            raise ValueError(f"attack {name!r} is already registered")
        _ATTACKS[name] = RegisteredAttack(
            name, fn, needs_shadows, line_style, description or (fn.__doc__ or "").strip()
        )
        return fn

    return decorate


def unregister_attack(name: str) -> None:
    """Remove an attack (tests that register a toy one)."""
    _ATTACKS.pop(name, None)


def get_attack(name: str) -> RegisteredAttack:
    """The attack registered as ``name``."""
    try:
        return _ATTACKS[name]
    except KeyError:
        known = ", ".join(_ATTACKS) or "none"
        raise KeyError(f"no attack named {name!r} (registered: {known})") from None


def attack_names() -> tuple[str, ...]:
    """Registered attacks, in registration order."""
    return tuple(_ATTACKS)


def registered_attacks() -> tuple[RegisteredAttack, ...]:
    """Every registered attack, in registration order."""
    return tuple(_ATTACKS.values())
