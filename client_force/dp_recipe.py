"""The DP training recipe: every optimiser and DP-SGD value as a fixed rule of public inputs.

Hyper-parameters chosen by looking at a force's data are a privacy leak (each look is an
unaccounted release) and an honesty problem. So a force does not tune: it applies a *recipe*,
a pure function of

* public constants written below (chosen only on separately seeded **public** synthetic
  worlds, which share no vehicle with any study world; see ``docs/dp-training.md``, "The
  recipe"), and
* the number of training vehicles N and the number of federated rounds R (the plan).

The current recipe ``anprfed-dp/2``:

* **sampling**: a fixed sample rate ``q = 1 / steps_per_epoch`` (10 Poisson steps per epoch),
  so the expected batch is ``B = N / 10``: large batches, because DP-SGD's noise per step is
  ``sigma * C / B`` and sigma grows only slowly with the number of steps. For small forces
  the batch is at least ``min_batch`` (or all N), i.e. fewer steps per epoch.
* **epochs**: ``epochs`` passes over the data for the whole study, split over the rounds
  (``local_epochs = ceil(epochs / R)``). Version 1 took 5, and its model was step-starved
  (docs/benchmarks/utility-recipe.md); version 2 takes 15.
* **optimiser**: Adam (DP-Adam: Opacus clips and noises, Adam normalises per coordinate);
  a constant learning rate.
* **clipping**: ``max_grad_norm`` per vehicle.
* **model**: ``model_hidden`` hidden units and ``model_conv_layers`` convolution blocks.
  Version 1 shrank the model (16 / 1) to cut the total noise; on the public worlds the larger
  model (32 / 2) learned several times faster without noise and also did better under DP.
  No normalisation layer (Opacus cannot train BatchNorm; inputs are standardised by fixed
  public constants, ``federation.features.scaling``).

Older versions stay resolvable (``resolve("anprfed-dp/1", ...)``) so a ledger entry or a run
made with them can be re-read and re-run. ``nonprivate_training`` is the matching rule for
the non-private references (pooled, epsilon = inf).

The resolved recipe (name, version and every value) is written into each privacy-ledger entry
and into the run's manifest.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

RECIPE_NAME = "anprfed-dp"


@dataclass(frozen=True)
class RecipeRule:
    """The public constants of one recipe version (not resolved for any N)."""

    version: int
    steps_per_epoch: int
    min_batch: int
    epochs: int
    learning_rate: float
    max_grad_norm: float
    optimizer: str
    model_hidden: int
    model_conv_layers: int
    tuned_on: str

    @property
    def recipe_id(self) -> str:
        """``name/version``."""
        return f"{RECIPE_NAME}/{self.version}"


RULES: dict[int, RecipeRule] = {
    1: RecipeRule(
        version=1,
        steps_per_epoch=10,
        min_batch=64,
        epochs=5,
        learning_rate=0.01,
        max_grad_norm=1.0,
        optimizer="adam",
        model_hidden=16,
        model_conv_layers=1,
        tuned_on=(
            "public synthetic world research.synth north-west, seed 1001, 60,000 vehicles, "
            "400 days, prevalence 0.01 (no vehicle shared with a study world); never a "
            "force's data"
        ),
    ),
    2: RecipeRule(
        version=2,
        steps_per_epoch=10,
        min_batch=64,
        epochs=15,
        learning_rate=0.01,
        max_grad_norm=1.0,
        optimizer="adam",
        model_hidden=32,
        model_conv_layers=2,
        tuned_on=(
            "public synthetic worlds only: research.synth north-west seed 1001 at 60,000 "
            "vehicles (400 days, prevalence 0.01, truth labels) and the default study's "
            "settings with world and study seed 1001 (4,000 vehicles, conviction labels); "
            "no vehicle shared with a study world; never a force's data"
        ),
    ),
}

CURRENT = RULES[2]
RECIPE_VERSION = CURRENT.version
RECIPE_ID = CURRENT.recipe_id

# The current rule's constants, by name (callers and tests read these).
STEPS_PER_EPOCH = CURRENT.steps_per_epoch
MIN_BATCH = CURRENT.min_batch
EPOCHS = CURRENT.epochs
LEARNING_RATE = CURRENT.learning_rate
MAX_GRAD_NORM = CURRENT.max_grad_norm
OPTIMIZER = CURRENT.optimizer
MODEL_HIDDEN = CURRENT.model_hidden
MODEL_CONV_LAYERS = CURRENT.model_conv_layers
TUNED_ON = CURRENT.tuned_on

NONPRIVATE_EPOCHS = 8
MAX_PHYSICAL_BATCH = 1024
"""Vehicles whose per-sample gradients DP-SGD holds at once (``client_force.dp_trainer``):
memory only, the logical batch is the rule's. Chosen on memory and speed with random inputs,
never data: flat ~0.3 GiB of working memory from 2,000 to 21,000-vehicle batches, and no
slower than unsplit (docs/benchmarks/physical-batch.md)."""
NONPRIVATE_BATCH = 256
NONPRIVATE_LEARNING_RATE = 3e-3
NORMALISATION = "none (fixed public input standardisation; no BatchNorm)"


class RecipeError(ValueError):
    """An unknown recipe name or an input the recipe cannot serve."""


@dataclass(frozen=True)
class DPRecipe:
    """One resolved recipe: the values a force trains with for N vehicles and R rounds."""

    name: str
    version: int
    n_vehicles: int
    rounds: int
    expected_batch_size: int
    sample_rate: float
    local_epochs: int
    total_epochs: int
    optimizer: str
    learning_rate: float
    lr_schedule: str
    momentum: float
    max_grad_norm: float
    model_hidden: int
    model_conv_layers: int
    normalisation: str
    tuned_on: str
    trainable: str = "all"  # "all" | "head" (the run's train-layers: a fixed public encoder)

    @property
    def recipe_id(self) -> str:
        """``name/version``."""
        return f"{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """Every value, for the ledger entry and the manifest."""
        return asdict(self)


def dp_recipe(n_vehicles: int, rounds: int = 1) -> DPRecipe:
    """The current recipe (``RECIPE_ID``) for ``n_vehicles`` training vehicles, ``rounds`` rounds.

    A pure function of its two arguments and the module's public constants (no data is read).
    """
    return _resolve_rule(CURRENT, n_vehicles, rounds)


def _resolve_rule(rule: RecipeRule, n_vehicles: int, rounds: int) -> DPRecipe:
    if n_vehicles < 1:
        raise RecipeError(f"the recipe needs at least one training vehicle; got {n_vehicles}")
    if rounds < 1:
        raise RecipeError(f"rounds must be at least 1; got {rounds}")
    batch = max(min(rule.min_batch, n_vehicles), round(n_vehicles / rule.steps_per_epoch))
    steps = max(1, round(n_vehicles / batch))
    local_epochs = math.ceil(rule.epochs / rounds)
    return DPRecipe(
        name=RECIPE_NAME,
        version=rule.version,
        n_vehicles=int(n_vehicles),
        rounds=int(rounds),
        expected_batch_size=int(batch),
        sample_rate=1.0 / steps,
        local_epochs=local_epochs,
        total_epochs=local_epochs * rounds,
        optimizer=rule.optimizer,
        learning_rate=rule.learning_rate,
        lr_schedule="constant",
        momentum=0.0,
        max_grad_norm=rule.max_grad_norm,
        model_hidden=rule.model_hidden,
        model_conv_layers=rule.model_conv_layers,
        normalisation=NORMALISATION,
        tuned_on=rule.tuned_on,
    )


def describe(name: str = RECIPE_ID) -> dict[str, Any]:
    """The rule itself (constants, not resolved for any N): what a run's manifest records."""
    rule = _rule(name)
    return {
        "recipe": rule.recipe_id,
        "sample_rate": f"1/{rule.steps_per_epoch} (expected batch N/{rule.steps_per_epoch}, "
        f"at least min({rule.min_batch}, N))",
        "epochs": f"{rule.epochs} over the study (local_epochs = ceil({rule.epochs} / rounds))",
        "optimizer": rule.optimizer,
        "learning_rate": rule.learning_rate,
        "lr_schedule": "constant",
        "max_grad_norm": rule.max_grad_norm,
        "model_hidden": rule.model_hidden,
        "model_conv_layers": rule.model_conv_layers,
        "normalisation": NORMALISATION,
        "physical_batch": f"at most {MAX_PHYSICAL_BATCH} vehicles a chunk (memory only: noise, "
        "accounting and the optimiser step once per logical batch)",
        "nonprivate": {
            "optimizer": "adam",
            "learning_rate": NONPRIVATE_LEARNING_RATE,
            "batch_size": NONPRIVATE_BATCH,
            "epochs": NONPRIVATE_EPOCHS,
        },
        "tuned_on": rule.tuned_on,
    }


RECIPES = tuple(rule.recipe_id for rule in RULES.values())


def _rule(name: str) -> RecipeRule:
    for rule in RULES.values():
        if rule.recipe_id == name:
            return rule
    raise RecipeError(f"unknown DP recipe {name!r}; known recipes: {', '.join(RECIPES)}")


def resolve(name: str, n_vehicles: int, rounds: int) -> DPRecipe:
    """The recipe called ``name`` (e.g. ``anprfed-dp/2``) resolved for N vehicles, R rounds."""
    return _resolve_rule(_rule(name), n_vehicles, rounds)


def nonprivate_training(seed: int | None = None) -> dict[str, Any]:
    """The non-private references' settings (pooled, epsilon = inf): Adam, batch, epochs.

    Unclipped, noiseless gradients: Adam at a small step in small batches, a fixed number of
    epochs. Returned as plain values so callers build their own ``TrainingConfig``.
    """
    return {
        "optimizer": "adam",
        "learning_rate": NONPRIVATE_LEARNING_RATE,
        "batch_size": NONPRIVATE_BATCH,
        "epochs": NONPRIVATE_EPOCHS,
        "seed": seed,
    }
