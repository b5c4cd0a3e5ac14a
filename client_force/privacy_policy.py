"""A force's privacy policy: what the force allows, whatever the national server's run config asks.

The run config (chosen by whoever starts a Flower run, i.e. the national server) may only
*request* DP settings. The force's policy, set by the force's own operator, decides:

* ``epsilon-budget``: the lifetime epsilon of the force's ledger (fixed at its creation);
* ``delta``: the ledger's delta, fixed at creation and never raised (0 = at the first round,
  the largest power of ten at most 1/(10 x training vehicles), so delta reveals only the order
  of magnitude of the force's size);
* ``min-noise-multiplier`` and ``max-sample-rate``: limits on each DP-SGD round;
* ``max-evaluate-rounds``: how many held-out evaluations the server may ever ask for;
* ``min-test-fraction`` / ``max-test-fraction``: the held-out share the server may request;
* ``metric-noise-multiplier``, ``evaluate-noise-multiplier`` and ``loss-clip``: the Gaussian
  releases of the scalars a round returns (see ``client_force.private_training``);
* ``allow-simulation-settings``: whether ``training-seed`` (fixed DP noise) and
  ``ledger-scope`` (a separate ledger per simulated sweep point, whose budget is the run
  config's ``dp-target-epsilon``) are accepted at all. False by default: a deployed SuperNode
  refuses them. Only a simulated force (``client_force.simulated_force``) sets it;
* ``allow-audit-probes``: whether the force adds the Dirac gradient canaries of a canary audit
  (``client_force.gradient_canaries``) found in its own store to its DP-SGD steps. False by
  default and in the simulation policy; requires ``allow-simulation-settings``. Only the canary
  audit's scratch copy of a store sets it; no run-config key can.

Where it comes from, first found wins: ``policy-file`` in the node config (deployment: the
SuperNode's ``--node-config``, a file the force's operator controls), then
``STORE/privacy/policy.toml`` (written by :func:`write_store_policy` with an HMAC under a key
derived from the force's master secret, so a file planted by a local user without the key is
refused), then :data:`DEFAULT_POLICY`. A file holds the kebab-case keys above at top level.

A round that asks for more than the policy allows raises :class:`PolicyRefusedError`; the apps turn
it into the error reply ``policy-refused`` before anything is trained or spent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

POLICY_FILE_NAME = "policy.toml"


class PolicyError(ValueError):
    """A policy file that is unreadable or holds an unknown or invalid key (names it)."""


class PolicyRefusedError(Exception):
    """The server's request exceeds what this force's policy allows (nothing was spent)."""


@dataclass(frozen=True)
class PrivacyPolicy:
    """One force's privacy policy (module docstring); kebab-case keys in the file."""

    epsilon_budget: float = 8.0
    delta: float = 0.0
    min_noise_multiplier: float = 0.5
    max_sample_rate: float = 0.1
    max_evaluate_rounds: int = 10
    min_test_fraction: float = 0.1
    max_test_fraction: float = 0.3
    metric_noise_multiplier: float = 30.0
    evaluate_noise_multiplier: float = 10.0
    loss_clip: float = 10.0
    allow_simulation_settings: bool = False
    allow_audit_probes: bool = False

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise PolicyError(f"privacy policy {key}: {what}")

        need(
            self.epsilon_budget > 0 and math.isfinite(self.epsilon_budget),
            "epsilon-budget",
            "must be positive and finite",
        )
        need(0.0 <= self.delta < 1.0, "delta", "must be in [0, 1) (0 = set at the first round)")
        need(self.min_noise_multiplier > 0, "min-noise-multiplier", "must be > 0")
        need(0.0 < self.max_sample_rate <= 1.0, "max-sample-rate", "must be in (0, 1]")
        need(self.max_evaluate_rounds >= 0, "max-evaluate-rounds", "must be >= 0")
        need(
            0.0 < self.min_test_fraction <= self.max_test_fraction < 1.0,
            "min-test-fraction",
            "need 0 < min-test-fraction <= max-test-fraction < 1",
        )
        for name in ("metric_noise_multiplier", "evaluate_noise_multiplier", "loss_clip"):
            value = getattr(self, name)
            need(value > 0 and math.isfinite(value), name.replace("_", "-"), "must be > 0")
        need(
            not self.allow_audit_probes or self.allow_simulation_settings,
            "allow-audit-probes",
            "requires allow-simulation-settings (audit probes are simulation-only)",
        )

    # ------------------------------------------------------------------ files
    @classmethod
    def from_mapping(cls, values: dict[str, Any], where: str) -> PrivacyPolicy:
        """A policy from kebab-case keys; unknown keys and wrong types name ``where``."""
        known = {f.name.replace("_", "-"): f for f in fields(cls)}
        updates: dict[str, Any] = {}
        for key, value in values.items():
            spec = known.get(key)
            if spec is None:
                raise PolicyError(f"{where}: unknown policy key {key!r}; known: {sorted(known)}")
            default = getattr(cls(), spec.name)
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                value = float(value) if ok else value
            if not ok:
                raise PolicyError(f"{where}: policy key {key!r} expects {type(default).__name__}")
            updates[spec.name] = value
        try:
            return replace(cls(), **updates)
        except PolicyError as exc:
            raise PolicyError(f"{where}: {exc}") from None

    @classmethod
    def read(cls, path: str | Path) -> PrivacyPolicy:
        """Read a policy TOML file."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise PolicyError(f"{path}: unreadable privacy policy ({exc})") from None
        return cls.from_mapping(data, str(path))

    def to_toml(self) -> str:
        """The policy as TOML (kebab-case keys)."""
        lines = []
        for name, value in asdict(self).items():
            text = ("true" if value else "false") if isinstance(value, bool) else repr(value)
            lines.append(f"{name.replace('_', '-')} = {text}")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ decisions
    def ledger_delta(self, n_vehicles: int) -> float:
        """The delta a new ledger is created with: the policy's, or a power of ten <= 1/(10 n)."""
        if self.delta > 0:
            return self.delta
        return 10.0 ** math.floor(math.log10(1.0 / (10 * max(1, n_vehicles))))


DEFAULT_POLICY = PrivacyPolicy()
"""A deployed force's policy when it has none of its own (no simulation-only settings)."""

SIMULATION_POLICY = PrivacyPolicy(
    epsilon_budget=1000.0,
    min_noise_multiplier=0.3,
    max_sample_rate=1.0,
    max_evaluate_rounds=1000,
    min_test_fraction=0.05,
    max_test_fraction=0.5,
    allow_simulation_settings=True,
)
"""A simulated force's policy: simulation-only settings allowed, wide limits (synthetic data)."""


def store_policy_path(store_root: str | Path) -> Path:
    """``STORE/privacy/policy.toml``."""
    return Path(store_root) / "privacy" / POLICY_FILE_NAME


def _policy_mac(key: bytes, values: dict[str, Any]) -> str:
    payload = json.dumps(values, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def write_store_policy(store_root: str | Path, policy: PrivacyPolicy, key: bytes) -> Path:
    """Write ``STORE/privacy/policy.toml`` with its HMAC (``mac``) under ``key``."""
    from safefiles import atomic_write_text  # local: keeps this module import-light

    path = store_policy_path(store_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = tomllib.loads(policy.to_toml())
    atomic_write_text(path, policy.to_toml() + f'mac = "{_policy_mac(key, values)}"\n')
    return path


def load_policy(
    store_root: str | Path, policy_file: str | Path | None = None, key: bytes | None = None
) -> PrivacyPolicy:
    """The force's policy: ``policy_file`` (node config), else the store's, else the default.

    The store's file must carry a valid ``mac`` under ``key``; otherwise it is refused.
    """
    if policy_file is not None:
        return PrivacyPolicy.read(policy_file)
    path = store_policy_path(store_root)
    if not path.exists():
        return DEFAULT_POLICY
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{path}: unreadable privacy policy ({exc})") from None
    mac = data.pop("mac", None)
    if (
        key is None
        or not isinstance(mac, str)
        or not hmac.compare_digest(mac, _policy_mac(key, data))
    ):
        raise PolicyError(f"{path}: the store's privacy policy fails authentication; refused")
    return PrivacyPolicy.from_mapping(data, str(path))
