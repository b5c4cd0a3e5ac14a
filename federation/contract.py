"""The egress contract: exactly what a force may send to the national server.

Both sides build the same :class:`EgressContract` from the model's ``weight_spec``: the
national server's egress guard checks every reply against it, and a force checks its own
reply before sending (``check_train_reply`` / ``check_evaluate_reply``). A reply is

* **train**: a ``RecordDict`` holding exactly one ``ArrayRecord`` under ``"arrays"`` (the
  model arrays with the agreed names, shapes and dtypes, finite, canonically serialised) and
  one ``MetricRecord`` under ``"metrics"`` (exactly the train metric keys below);
* **evaluate**: exactly one ``MetricRecord`` under ``"metrics"`` (the evaluate metric keys).

Nothing else: no ``ConfigRecord`` (the only record type that can carry strings or bytes), no
extra record, array or metric. Metric values are scalar ``int``/``float`` (never ``bool`` or a
list), finite and inside the ranges below.

Violations are reported as :class:`Violation` values whose ``code`` is one of
:data:`VIOLATION_CODES` and whose ``detail`` is built only from names in the contract itself,
never from what was received, so a rejection can be logged without echoing a smuggled VRM.

A force that cannot or must not train replies with a Flower error whose code is one of
:data:`CLIENT_ERROR_CODES` and whose reason is that code's fixed name, nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

ARRAY_RECORD_KEY = "arrays"
METRIC_RECORD_KEY = "metrics"
NUMPY_STYPE = "numpy.ndarray"


@dataclass(frozen=True)
class MetricRule:
    """A metric's type (``int`` or ``float``), inclusive bounds, and the guarantee it leaves under.

    ``allow_inf`` admits ``+inf`` (only ``epsilon``, and only for a non-private reference round,
    which must say so with ``delta = 1``).
    """

    kind: type
    low: float
    high: float = math.inf
    guarantee: str = ""
    allow_inf: bool = False


DP_RELEASE = "dp-release"
"""Post-processing of a Gaussian release charged to the force's ledger."""
ACCOUNTING = "accounting"
"""The force's own accounting of its spend: epsilon rounded up to 0.01, its ledger's fixed delta."""

TRAIN_METRICS: Mapping[str, MetricRule] = {
    "num-examples": MetricRule(int, 1, guarantee=DP_RELEASE),
    "train-loss": MetricRule(float, 0.0, guarantee=DP_RELEASE),
    "epsilon": MetricRule(float, 0.0, guarantee=ACCOUNTING, allow_inf=True),
    "delta": MetricRule(float, 0.0, 1.0, guarantee=ACCOUNTING),
}
"""Metrics a force sends after local training. ``num-examples`` (a noisy vehicle count, also
FedAvg's weight) and ``train-loss`` (the clipped loss of the trained model, noisy) are one
Gaussian release charged to the force's ledger; ``epsilon`` is the force's cumulative spend at
its ledger's fixed ``delta`` (all its rounds and runs), rounded up to 0.01. A NON-PRIVATE
reference round (simulation only) reports ``epsilon = inf`` and ``delta = 1``, and its
``num-examples`` and ``train-loss`` are exact."""

EVALUATE_METRICS: Mapping[str, MetricRule] = {
    "num-examples": MetricRule(int, 1, guarantee=DP_RELEASE),
    "num-positives": MetricRule(int, 0, guarantee=DP_RELEASE),
    "eval-loss": MetricRule(float, 0.0, guarantee=DP_RELEASE),
    "pr-auc": MetricRule(float, 0.0, 1.0, guarantee=DP_RELEASE),
    "precision-at-recall-0.5": MetricRule(float, 0.0, 1.0, guarantee=DP_RELEASE),
}
"""Metrics a force sends after evaluating the global model on its held-out vehicles: all
post-processing of one Gaussian release (score histograms of positives and negatives over fixed
bins, and the clipped loss sum) charged to the force's ledger; evaluate rounds are capped by the
force's policy. Noisy: with few held-out positives they say little (the force evaluates
exactly only for itself)."""

VIOLATION_CODES = (
    "error-reply",  # the reply is a Flower error (recorded as a failure, not a rejection)
    "wrong-message-type",  # reply type differs from the instruction's
    "wrong-round",  # reply group id differs from the instruction's round
    "unknown-node",  # reply from a node that was not sent this round's instruction
    "duplicate-reply",  # a second reply from the same node in the same round
    "missing-record",  # an expected record is absent
    "unexpected-record",  # a record outside the contract (any ConfigRecord, extra records)
    "array-missing",  # an agreed array is absent
    "array-unexpected",  # an array name outside the contract
    "array-stype",  # not a numpy-serialised array
    "array-dtype",  # declared or decoded dtype differs from the contract
    "array-shape",  # declared or decoded shape differs from the contract
    "array-encoding",  # bytes do not decode, or are not the canonical encoding
    "array-non-finite",  # NaN or infinity in an array
    "metric-missing",  # an agreed metric is absent
    "metric-unexpected",  # a metric key outside the allowlist
    "metric-type",  # not a scalar int/float of the agreed kind
    "metric-non-finite",  # NaN or infinity
    "metric-range",  # outside the agreed bounds
)


class Violation(NamedTuple):
    """One breach of the contract: a code and a detail naming only contract items."""

    code: str
    detail: str = ""


CLIENT_ERROR_CODES: Mapping[int, str] = {
    101: "privacy-budget-exhausted",
    102: "no-training-data",
    103: "store-unavailable",
    104: "self-check-failed",
    105: "internal-error",
    106: "invalid-instruction",
    107: "policy-refused",  # the run config asks for more than the force's privacy policy allows
}
"""Error codes a force's ClientApp may reply with; the reason is always the code's name."""

CLIENT_ERROR_BY_NAME: Mapping[str, int] = {name: code for code, name in CLIENT_ERROR_CODES.items()}


@dataclass(frozen=True)
class ArraySpec:
    """An agreed model array: name, shape and numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class EgressContract:
    """The arrays and metrics a force may send (see module docstring)."""

    arrays: tuple[ArraySpec, ...]
    train_metrics: Mapping[str, MetricRule] = None  # type: ignore[assignment]
    evaluate_metrics: Mapping[str, MetricRule] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.train_metrics is None:
            object.__setattr__(self, "train_metrics", dict(TRAIN_METRICS))
        if self.evaluate_metrics is None:
            object.__setattr__(self, "evaluate_metrics", dict(EVALUATE_METRICS))
        names = [a.name for a in self.arrays]
        if len(set(names)) != len(names):
            raise ValueError("weight spec has duplicate array names")
        if not names:
            raise ValueError("weight spec is empty")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_weight_spec(cls, spec: Iterable[tuple[str, Sequence[int], Any]]) -> EgressContract:
        """Build from ``weight_spec(config)``: ``(name, shape, dtype)`` triples in order."""
        return cls(
            arrays=tuple(
                ArraySpec(str(name), tuple(int(d) for d in shape), np.dtype(dtype).name)
                for name, shape, dtype in spec
            )
        )

    @classmethod
    def from_model_config(cls, config: Any) -> EgressContract:
        """Build from a ``federation.model.ModelConfig`` via ``weight_spec``."""
        from federation.model import weight_spec  # local: keeps this module light to import

        return cls.from_weight_spec(weight_spec(config))

    @property
    def array_names(self) -> tuple[str, ...]:
        """Agreed array names in model order."""
        return tuple(a.name for a in self.arrays)

    # ------------------------------------------------------------------ packing
    def to_array_record(self, arrays: Sequence[np.ndarray]) -> ArrayRecord:
        """Name ``arrays`` (model order) per the contract; raises ``ValueError`` on mismatch."""
        if len(arrays) != len(self.arrays):
            raise ValueError(f"expected {len(self.arrays)} arrays, got {len(arrays)}")
        record = ArrayRecord()
        for spec, value in zip(self.arrays, arrays, strict=True):
            value = np.ascontiguousarray(value)
            if value.shape != spec.shape or value.dtype.name != spec.dtype:
                raise ValueError(
                    f"array {spec.name!r}: expected {spec.dtype}{list(spec.shape)}, "
                    f"got {value.dtype.name}{list(value.shape)}"
                )
            record[spec.name] = Array(value)
        return record

    def from_array_record(self, record: ArrayRecord) -> list[np.ndarray]:
        """The arrays of ``record`` in model order; ``ValueError`` if it breaks the contract."""
        problems = self.check_arrays(record)
        if problems:
            raise ValueError(f"array record breaks the contract: {format_violations(problems)}")
        return [record[spec.name].numpy() for spec in self.arrays]

    # ------------------------------------------------------------------ checks
    def check_arrays(self, record: Any) -> list[Violation]:
        """Check an ``ArrayRecord`` against the agreed arrays."""
        if not isinstance(record, ArrayRecord):
            return [Violation("unexpected-record", f"'{ARRAY_RECORD_KEY}' is not an ArrayRecord")]
        out: list[Violation] = []
        expected = {a.name: a for a in self.arrays}
        extra = [key for key in record if key not in expected]
        if extra:
            out.append(Violation("array-unexpected", f"{len(extra)} array(s) outside the contract"))
        for spec in self.arrays:
            if spec.name not in record:
                out.append(Violation("array-missing", spec.name))
                continue
            out.extend(_check_array(spec, record[spec.name]))
        return out

    def check_metrics(self, record: Any, kind: str) -> list[Violation]:
        """Check a ``MetricRecord`` against the ``kind`` (``"train"``/``"evaluate"``) allowlist."""
        rules = self._rules(kind)
        if not isinstance(record, MetricRecord):
            return [Violation("unexpected-record", f"'{METRIC_RECORD_KEY}' is not a MetricRecord")]
        return check_metric_values(record, rules)

    def check_train_reply(self, content: Any) -> list[Violation]:
        """Check a train reply's ``RecordDict``; an empty list means it may leave the force."""
        return self._check_content(content, {ARRAY_RECORD_KEY, METRIC_RECORD_KEY}, "train")

    def check_evaluate_reply(self, content: Any) -> list[Violation]:
        """Check an evaluate reply's ``RecordDict``; an empty list means it may leave the force."""
        return self._check_content(content, {METRIC_RECORD_KEY}, "evaluate")

    def _rules(self, kind: str) -> Mapping[str, MetricRule]:
        if kind == "train":
            return self.train_metrics
        if kind == "evaluate":
            return self.evaluate_metrics
        raise ValueError(f"unknown reply kind {kind!r}")

    def _check_content(self, content: Any, keys: set[str], kind: str) -> list[Violation]:
        if not isinstance(content, RecordDict):
            return [Violation("missing-record", "reply has no RecordDict content")]
        out: list[Violation] = []
        unexpected = [key for key in content if key not in keys]
        if unexpected:
            n_config = sum(1 for key in unexpected if key in content.config_records)
            out.append(
                Violation(
                    "unexpected-record",
                    f"{len(unexpected)} record(s) outside the contract"
                    + (f", {n_config} ConfigRecord(s)" if n_config else ""),
                )
            )
        for key in sorted(keys):
            if key not in content:
                out.append(Violation("missing-record", key))
        if ARRAY_RECORD_KEY in keys and ARRAY_RECORD_KEY in content:
            out.extend(self.check_arrays(content[ARRAY_RECORD_KEY]))
        if METRIC_RECORD_KEY in content:
            out.extend(self.check_metrics(content[METRIC_RECORD_KEY], kind))
        return out


def check_metric_values(
    record: Mapping[str, Any], rules: Mapping[str, MetricRule]
) -> list[Violation]:
    """Violations of a metric mapping against ``rules`` (allowlist, kinds, ranges, the
    non-private pair ``epsilon = inf`` <=> ``delta = 1``)."""
    out: list[Violation] = []
    extra = [key for key in record if key not in rules]
    if extra:
        out.append(Violation("metric-unexpected", f"{len(extra)} metric(s) outside the allowlist"))
    for name, rule in rules.items():
        if name not in record:
            out.append(Violation("metric-missing", name))
            continue
        out.extend(check_metric(name, rule, record[name]))
    eps, delta = record.get("epsilon"), record.get("delta")
    paired = "epsilon" in rules and isinstance(eps, float) and isinstance(delta, int | float)
    if paired and math.isinf(eps) != (delta == 1.0):
        out.append(Violation("metric-range", "epsilon = inf exactly when delta = 1 (non-private)"))
    return out


def _check_array(spec: ArraySpec, array: Any) -> list[Violation]:
    if not isinstance(array, Array):
        return [Violation("array-encoding", spec.name)]
    if array.stype != NUMPY_STYPE:
        return [Violation("array-stype", spec.name)]
    if array.dtype != spec.dtype:
        return [Violation("array-dtype", f"{spec.name}: expected {spec.dtype}")]
    if tuple(array.shape) != spec.shape:
        return [Violation("array-shape", f"{spec.name}: expected {list(spec.shape)}")]
    try:
        value = array.numpy()
    except Exception:  # any decoding failure is a contract breach, never a crash
        return [Violation("array-encoding", spec.name)]
    if value.dtype.name != spec.dtype or value.shape != spec.shape:
        return [Violation("array-encoding", f"{spec.name}: header differs from declaration")]
    if Array(np.ascontiguousarray(value)).data != array.data:
        # Extra header padding or trailing bytes could carry anything: only the canonical
        # numpy encoding of the declared array is accepted.
        return [Violation("array-encoding", f"{spec.name}: not the canonical encoding")]
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        return [Violation("array-non-finite", spec.name)]
    return []


def check_metric(name: str, rule: MetricRule, value: Any) -> list[Violation]:
    """Violations of one metric value against its rule (scalar kind, finite, in range)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [Violation("metric-type", f"{name}: expected a scalar {rule.kind.__name__}")]
    if rule.kind is int and not isinstance(value, int):
        return [Violation("metric-type", f"{name}: expected an int")]
    if rule.allow_inf and value == math.inf:
        return []
    if not math.isfinite(value):
        return [Violation("metric-non-finite", name)]
    if not rule.low <= value <= rule.high:
        return [Violation("metric-range", f"{name}: outside [{rule.low:g}, {rule.high:g}]")]
    return []


def format_violations(violations: Iterable[Violation]) -> str:
    """One line listing the violations (safe to log: contract names only)."""
    return "; ".join(f"{v.code}({v.detail})" if v.detail else v.code for v in violations)


def client_error_name(code: int) -> str:
    """The fixed name of a force error code, or ``"flower-<code>"`` for Flower's own codes."""
    return CLIENT_ERROR_CODES.get(int(code), f"flower-{int(code)}")
