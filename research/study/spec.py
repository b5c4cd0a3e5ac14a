"""The study spec: a TOML file that names the world, the designs, DP and retention settings.

``load_spec(path)`` reads and validates a spec; ``default_spec()`` returns the built-in default
scenario (``research/study/default_study.toml``). Every validation error names the field.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from client_force.dp_recipe import RECIPES

# the built-in designs, in the default order
DESIGNS = ("public-start", "local-only", "federated", "pooled")
STRATEGIES = ("fedavg", "fedprox")
PRETRAINING = ("encoder", "encoder-frozen", "full", "none")


class SpecError(ValueError):
    """A study spec that cannot be used; the message names the file and field."""


@dataclass(frozen=True)
class WorldSpec:
    """Which synthetic world to generate (see ``anprfed synth``)."""

    preset: str = "north-west"
    vehicles: int = 4000
    days: int = 900
    start: date = date(2024, 1, 1)
    prevalence: float = 0.05
    seed: int = 7

    @property
    def end(self) -> date:
        """The last simulated day (inclusive)."""
        return self.start + timedelta(days=self.days - 1)


@dataclass(frozen=True)
class DPSpec:
    """Differential-privacy target per force per study, and the epsilon sweep."""

    epsilon: float = 4.0
    delta: float | None = None  # None: 1 / (10 x the force's training vehicles)
    max_grad_norm: float = 1.0
    epsilon_sweep: tuple[float, ...] = ()
    # Also run every DP design once WITHOUT DP (eps = inf, no ledger spend) at the main
    # retention window, so a study separates what federation costs from what DP costs.
    # Simulation only: a force's policy refuses non-private rounds in deployment.
    nonprivate_references: bool = False


@dataclass(frozen=True)
class TrainingSpec:
    """Rounds, local epochs and optimiser settings shared by every design."""

    rounds: int = 5
    local_epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 0.003
    max_reads: int = 96
    strategy: str = "fedavg"
    proximal_mu: float = 0.0
    round_timeout_s: float = 600.0
    secure_aggregation: bool = False
    # The DP training recipe (client_force.dp_recipe): "anprfed-dp/2" = each force derives its
    # batch, epochs, optimiser, learning rate and clipping from a fixed public rule and its
    # vehicle count (then batch_size, learning_rate and local_epochs apply to nothing private);
    # "" = use batch_size, learning_rate and local_epochs as written.
    recipe: str = "anprfed-dp/2"
    model_hidden: int = 32  # the recipe's model size (client_force.dp_recipe.MODEL_HIDDEN)
    model_conv_layers: int = 2
    # Start every design from a model pre-trained on a separately seeded PUBLIC synthetic
    # world (research.study.public_init): "encoder" = its read encoder only (the head is
    # learned from the forces' labels), "encoder-frozen" = that encoder kept FIXED and only
    # the head trained (far fewer weights noised under DP), "full" = every weight, "none" =
    # seeded initialisation.
    public_pretraining: str = "encoder"


@dataclass(frozen=True)
class RetentionSpec:
    """Retention window applied by the purge before training, and its sweep."""

    max_age_days: int = 365
    sweep: tuple[int, ...] = ()


@dataclass(frozen=True)
class EvaluationSpec:
    """How results are judged: held-out share and the realistic prevalence to re-weight to."""

    test_fraction: float = 0.3
    realistic_prevalence: float = 1 / 400
    recall: float = 0.5


@dataclass(frozen=True)
class PositivesSpec:
    """The "how many positives are needed" sweep (``research/study/positives.py``).

    Each list varies the labelled positives a design can train on; the sweep runs when any
    list is non-empty. ``prevalence``: worlds generated at these prevalences (same seed and
    size); ``forces``: numbers of forces taking part, largest first (by reads); ``retention``:
    windows (default: the study's). ``designs`` default to the study's.
    """

    prevalence: tuple[float, ...] = ()
    forces: tuple[int, ...] = ()
    retention: tuple[int, ...] = ()
    designs: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        """Whether the spec asks for the sweep."""
        return bool(self.prevalence or self.forces or self.retention)


@dataclass(frozen=True)
class StudySpec:
    """Everything a study run needs; serialisable back to TOML-compatible data."""

    name: str = "default"
    seed: int = 7
    # Repeats of every design on the same world, keys and split, each with its own training
    # seed (DP noise, sampling): the spread across repeats sits beside the bootstrap interval.
    repeats: int = 1
    world: WorldSpec = field(default_factory=WorldSpec)
    designs: tuple[str, ...] = DESIGNS
    training: TrainingSpec = field(default_factory=TrainingSpec)
    dp: DPSpec = field(default_factory=DPSpec)
    retention: RetentionSpec = field(default_factory=RetentionSpec)
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    study_date: date | None = None  # None: the day after the world's last day
    forces: tuple[str, ...] = ()  # forces taking part; empty: every force of the world
    positives: PositivesSpec = field(default_factory=PositivesSpec)

    @property
    def as_of(self) -> date:
        """The date the study is run on: purges and labels are as of this day."""
        return self.study_date or (self.world.end + timedelta(days=1))

    def epsilons(self) -> tuple[float, ...]:
        """The epsilon sweep with the main target ``dp.epsilon`` always in it, ascending."""
        return tuple(sorted({*self.dp.epsilon_sweep, self.dp.epsilon}))

    def retention_windows(self) -> tuple[int, ...]:
        """The retention sweep with the main window ``max_age_days`` always in it, longest first."""
        return tuple(sorted({*self.retention.sweep, self.retention.max_age_days}, reverse=True))

    def sweep_points(self) -> list[tuple[int, float]]:
        """(retention days, epsilon) pairs to run, one factor at a time.

        The epsilon sweep runs at the main retention window (``retention.max_age_days``) and
        the retention sweep at the main epsilon (``dp.epsilon``), so a sweep of E epsilons and
        R windows costs E + R - 1 runs per design rather than E x R.
        """
        main_window, main_eps = self.retention.max_age_days, self.dp.epsilon
        points = [(main_window, eps) for eps in self.epsilons()]
        points += [(w, main_eps) for w in self.retention_windows() if w != main_window]
        return points

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the manifest (dates as ISO strings, inf as the string "inf")."""
        return _jsonable(asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return value


_SECTIONS: dict[str, type] = {
    "world": WorldSpec,
    "training": TrainingSpec,
    "dp": DPSpec,
    "retention": RetentionSpec,
    "evaluation": EvaluationSpec,
    "positives": PositivesSpec,
}

_TUPLE_KINDS: dict[str, type] = {
    "positives.prevalence": float,
    "positives.forces": int,
    "positives.retention": int,
}


def _coerce(where: str, name: str, value: Any, default: Any) -> Any:
    """Convert a TOML value to the type of the field's default, naming the field on failure."""
    field_name = f"{where}.{name}" if where else name
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError("expected true or false")
            return value
        if isinstance(default, date) or name in ("start", "study_date"):
            return value if isinstance(value, date) else date.fromisoformat(str(value))
        if isinstance(default, tuple):
            if not isinstance(value, list):
                raise TypeError("expected a list")
            kind = _TUPLE_KINDS.get(field_name) or (
                int if name == "sweep" else (float if "epsilon" in name else str)
            )
            return tuple(_number(v, kind) if kind is not str else str(v) for v in value)
        if isinstance(default, int):
            return _number(value, int)
        if isinstance(default, float) or default is None:
            return _number(value, float)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"field `{field_name}`: {exc}") from None


def _number(value: Any, kind: type) -> Any:
    if isinstance(value, str) and value.lower() in ("inf", "infinity", "non-private"):
        if kind is int:
            raise ValueError("expected a whole number")
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if kind is int:
        if float(value) != int(value):
            raise ValueError("expected a whole number")
        return int(value)
    return float(value)


def _nearest(name: str, known: Any) -> str:
    """`` (did you mean `x`?)`` for the closest known name, or nothing if none is close."""
    close = difflib.get_close_matches(str(name), sorted(known), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _elsewhere(name: str, where: str) -> str:
    """`` (a field of [dp])`` when ``name`` belongs to another section, else nothing."""
    for section, cls in _SECTIONS.items():
        if section != where and name in asdict(cls()):
            return f" (a field of [{section}], not of this section)"
    return ""


def _refuse_unknown(where: str, data: dict[str, Any], known: set[str]) -> None:
    """Raise ``SpecError`` for the first unknown field, naming its section and the nearest name.

    ``where`` is the section (``"world"``) or ``""`` for the top level.
    """
    unknown = sorted(set(data) - known)
    if not unknown:
        return
    section = f"[{where}]" if where else "the top level"
    problems = [f"`{name}`{_elsewhere(name, where) or _nearest(name, known)}" for name in unknown]
    raise SpecError(
        f"unknown field(s) in {section}: {', '.join(problems)}; "
        f"known fields there: {', '.join(sorted(known))}"
    )


def _build(cls: type, where: str, data: dict[str, Any]) -> Any:
    defaults = cls()
    _refuse_unknown(where, data, set(asdict(defaults)))
    values = {k: _coerce(where, k, v, getattr(defaults, k)) for k, v in data.items()}
    return replace(defaults, **values)


def spec_from_dict(data: dict[str, Any]) -> StudySpec:
    """Build and validate a spec from parsed TOML data."""
    top_known = {"name", "seed", "repeats", "designs", "study_date", "forces", *_SECTIONS}
    _refuse_unknown("", data, top_known)
    kwargs: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            raise SpecError(f"`{section}` must be a table ([{section}])")
        kwargs[section] = _build(cls, section, raw)
    if "name" in data:
        kwargs["name"] = str(data["name"])
    if "seed" in data:
        kwargs["seed"] = _coerce("", "seed", data["seed"], 0)
    if "repeats" in data:
        kwargs["repeats"] = _coerce("", "repeats", data["repeats"], 1)
    if "study_date" in data:
        kwargs["study_date"] = _coerce("", "study_date", data["study_date"], date.today())
    if "forces" in data:
        forces = data["forces"]
        if not isinstance(forces, list) or not all(isinstance(f, str) and f for f in forces):
            raise SpecError("field `forces`: expected a list of force names")
        kwargs["forces"] = tuple(forces)
    if "designs" in data:
        designs = data["designs"]
        if not isinstance(designs, list) or not designs:
            raise SpecError("field `designs`: expected a non-empty list")
        kwargs["designs"] = tuple(str(d) for d in designs)
    spec = StudySpec(**kwargs)
    validate(spec)
    return spec


def validate(spec: StudySpec) -> None:
    """Raise ``SpecError`` naming the first field whose value cannot be used."""
    checks: list[tuple[bool, str]] = [
        _designs_check(spec.designs),
        (spec.seed >= 0, "`seed` must be >= 0"),
        (1 <= spec.repeats <= 100, "`repeats` must be between 1 and 100"),
        (spec.world.vehicles >= 50, "`world.vehicles` must be at least 50"),
        (spec.world.days >= 7, "`world.days` must be at least 7"),
        (0 < spec.world.prevalence < 0.5, "`world.prevalence` must be in (0, 0.5)"),
        (spec.training.rounds >= 1, "`training.rounds` must be at least 1"),
        (spec.training.local_epochs >= 1, "`training.local_epochs` must be at least 1"),
        (spec.training.batch_size >= 1, "`training.batch_size` must be at least 1"),
        (spec.training.learning_rate > 0, "`training.learning_rate` must be positive"),
        (spec.training.max_reads >= 4, "`training.max_reads` must be at least 4"),
        (spec.training.strategy in STRATEGIES, f"`training.strategy` must be in {STRATEGIES}"),
        (spec.training.proximal_mu >= 0, "`training.proximal_mu` must be >= 0"),
        (spec.training.round_timeout_s > 0, "`training.round_timeout_s` must be positive"),
        (
            spec.training.recipe in ("", *RECIPES),
            f'`training.recipe` must be "" or one of {RECIPES}; got {spec.training.recipe!r}',
        ),
        (
            spec.training.public_pretraining in PRETRAINING,
            f"`training.public_pretraining` must be one of {PRETRAINING}",
        ),
        (spec.training.model_hidden >= 1, "`training.model_hidden` must be at least 1"),
        (spec.training.model_conv_layers >= 0, "`training.model_conv_layers` must be >= 0"),
        (
            all(0 < e < math.inf for e in spec.epsilons()),
            "`dp.epsilon` and `dp.epsilon_sweep` values must be positive and finite (for "
            "non-private references of the DP designs set `dp.nonprivate_references = true`)",
        ),
        (spec.dp.delta is None or 0 < spec.dp.delta < 1, "`dp.delta` must be in (0, 1)"),
        (spec.dp.max_grad_norm > 0, "`dp.max_grad_norm` must be positive"),
        (
            isinstance(spec.dp.nonprivate_references, bool),
            "`dp.nonprivate_references` must be true or false",
        ),
        (all(w >= 1 for w in spec.retention_windows()), "`retention` windows must be >= 1 day"),
        (0 < spec.evaluation.test_fraction < 1, "`evaluation.test_fraction` must be in (0, 1)"),
        (
            0 < spec.evaluation.realistic_prevalence < 1,
            "`evaluation.realistic_prevalence` must be in (0, 1)",
        ),
        (0 < spec.evaluation.recall < 1, "`evaluation.recall` must be in (0, 1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise SpecError(message)
    _validate_positives(spec.positives)
    if spec.training.proximal_mu > 0 and spec.training.strategy != "fedprox":
        raise SpecError(
            f"`training.proximal_mu` = {spec.training.proximal_mu:g} has no effect with "
            f"`training.strategy` = {spec.training.strategy!r} (only FedProx uses a proximal "
            'term): set `strategy = "fedprox"` or `proximal_mu = 0`'
        )


def _designs_check(designs: tuple[str, ...]) -> tuple[bool, str]:
    """Every design must be registered (``research.study.designs``); names the bad value."""
    from research.study.designs import design_names

    known = design_names()
    bad = [d for d in designs if d not in known]
    hints = "".join(_nearest(d, known) for d in bad[:1])
    return (not bad, f"`designs`: unknown design(s) {bad}{hints}; must be among {known}")


def _validate_positives(sweep: PositivesSpec) -> None:
    checks: list[tuple[bool, str]] = [
        (
            all(0 < p < 0.5 for p in sweep.prevalence),
            "`positives.prevalence` values must be in (0, 0.5)",
        ),
        (all(k >= 1 for k in sweep.forces), "`positives.forces` values must be at least 1"),
        (all(w >= 1 for w in sweep.retention), "`positives.retention` windows must be >= 1 day"),
        _designs_check(sweep.designs),
    ]
    for ok, message in checks:
        if not ok:
            raise SpecError(message.replace("`designs`", "`positives.designs`", 1))


def load_spec(path: Path) -> StudySpec:
    """Read a study spec from a TOML file; errors name the file and the field."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such study spec") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML ({exc})") from None
    try:
        return spec_from_dict(data)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None


def default_spec_text() -> str:
    """The built-in default scenario as TOML text (also the documented example)."""
    return resources.files("research.study").joinpath("default_study.toml").read_text("utf-8")


def default_spec() -> StudySpec:
    """The built-in default scenario."""
    return spec_from_dict(tomllib.loads(default_spec_text()))
