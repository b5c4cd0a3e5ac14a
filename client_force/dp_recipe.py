"""The DP training recipe: every optimiser and DP-SGD value as a fixed rule of public inputs.

Hyper-parameters chosen by looking at a force's data are a privacy leak (each look is an
unaccounted release) and an honesty problem. So a force does not tune: it applies a *recipe*,
a pure function of

* public constants written below (tuned only on a separately seeded **public** synthetic
  world, ``research.synth`` seed 1001, 60,000 vehicles, which shares no vehicle with any
  study world; see ``docs/dp-training.md``, "The recipe"), and
* the number of training vehicles N and the number of federated rounds R (the plan).

The recipe ``anprfed-dp/1``:

* **sampling**: a fixed sample rate ``q = 1 / STEPS_PER_EPOCH`` (10 Poisson steps per epoch), so
  the expected batch is ``B = N / 10``: large batches, because DP-SGD's noise per step is
  ``sigma * C / B`` and sigma grows only slowly with the number of steps. For small forces the
  batch is at least ``MIN_BATCH`` (or all N), i.e. fewer steps per epoch.
* **epochs**: ``EPOCHS`` passes over the data for the whole study, split over the rounds
  (``local_epochs = ceil(EPOCHS / R)``).
* **optimiser**: Adam (DP-Adam: Opacus clips and noises, Adam normalises per coordinate);
  learning rate ``LEARNING_RATE``, constant within a round.
* **clipping**: ``MAX_GRAD_NORM`` per vehicle.
* **model**: ``MODEL_HIDDEN`` hidden units and ``MODEL_CONV_LAYERS`` convolution block: fewer
  parameters mean less total noise (its norm grows with the square root of the parameter
  count). No normalisation layer (Opacus cannot train BatchNorm; inputs are standardised by
  fixed public constants, ``federation.features.scaling``).

``NONPRIVATE`` is the matching rule for the non-private references (pooled, epsilon = inf).

The resolved recipe (name, version and every value) is written into each privacy-ledger entry
and into the run's manifest.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

RECIPE_NAME = "anprfed-dp"
RECIPE_VERSION = 1
RECIPE_ID = f"{RECIPE_NAME}/{RECIPE_VERSION}"

STEPS_PER_EPOCH = 10
MIN_BATCH = 64
EPOCHS = 5
LEARNING_RATE = 0.01
MAX_GRAD_NORM = 1.0
OPTIMIZER = "adam"
MODEL_HIDDEN = 16
MODEL_CONV_LAYERS = 1
TUNED_ON = (
    "public synthetic world research.synth north-west, seed 1001, 60,000 vehicles, 400 days, "
    "prevalence 0.01 (no vehicle shared with a study world); never a force's data"
)

NONPRIVATE_EPOCHS = 8
NONPRIVATE_BATCH = 256
NONPRIVATE_LEARNING_RATE = 3e-3


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
    """The ``anprfed-dp/1`` recipe for ``n_vehicles`` training vehicles over ``rounds`` rounds.

    A pure function of its two arguments and the module's public constants (no data is read).
    """
    if n_vehicles < 1:
        raise RecipeError(f"the recipe needs at least one training vehicle; got {n_vehicles}")
    if rounds < 1:
        raise RecipeError(f"rounds must be at least 1; got {rounds}")
    batch = max(min(MIN_BATCH, n_vehicles), round(n_vehicles / STEPS_PER_EPOCH))
    steps = max(1, round(n_vehicles / batch))
    local_epochs = math.ceil(EPOCHS / rounds)
    return DPRecipe(
        name=RECIPE_NAME,
        version=RECIPE_VERSION,
        n_vehicles=int(n_vehicles),
        rounds=int(rounds),
        expected_batch_size=int(batch),
        sample_rate=1.0 / steps,
        local_epochs=local_epochs,
        total_epochs=local_epochs * rounds,
        optimizer=OPTIMIZER,
        learning_rate=LEARNING_RATE,
        lr_schedule="constant",
        momentum=0.0,
        max_grad_norm=MAX_GRAD_NORM,
        model_hidden=MODEL_HIDDEN,
        model_conv_layers=MODEL_CONV_LAYERS,
        normalisation="none (fixed public input standardisation; no BatchNorm)",
        tuned_on=TUNED_ON,
    )


def describe() -> dict[str, Any]:
    """The rule itself (constants, not resolved for any N): what a run's manifest records."""
    return {
        "recipe": RECIPE_ID,
        "sample_rate": f"1/{STEPS_PER_EPOCH} (expected batch N/{STEPS_PER_EPOCH}, "
        f"at least min({MIN_BATCH}, N))",
        "epochs": f"{EPOCHS} over the study (local_epochs = ceil({EPOCHS} / rounds))",
        "optimizer": OPTIMIZER,
        "learning_rate": LEARNING_RATE,
        "lr_schedule": "constant",
        "max_grad_norm": MAX_GRAD_NORM,
        "model_hidden": MODEL_HIDDEN,
        "model_conv_layers": MODEL_CONV_LAYERS,
        "normalisation": "none (fixed public input standardisation; no BatchNorm)",
        "nonprivate": {
            "optimizer": "adam",
            "learning_rate": NONPRIVATE_LEARNING_RATE,
            "batch_size": NONPRIVATE_BATCH,
            "epochs": NONPRIVATE_EPOCHS,
        },
        "tuned_on": TUNED_ON,
    }


RECIPES = (RECIPE_ID,)


def resolve(name: str, n_vehicles: int, rounds: int) -> DPRecipe:
    """The recipe called ``name`` (``anprfed-dp/1``) resolved for N vehicles and R rounds."""
    if name != RECIPE_ID:
        raise RecipeError(f"unknown DP recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return dp_recipe(n_vehicles, rounds)


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
