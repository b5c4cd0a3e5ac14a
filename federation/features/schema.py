"""The location-free model input: feature names, road classes and the ``ExampleSet`` container.

One example is one vehicle (its retained reads in the study window), so DP-SGD's per-example
guarantee is a per-vehicle guarantee. Every feature is a function of *when* a vehicle was read
and of the *distances* between the cameras that read it; no camera identity and no coordinate
is a feature, so no model weight can encode where a camera is.

Road class is a property of a camera (motorway, trunk road, A-road, urban, rural, or a mobile
unit), not its identity: many cameras share each class, the one-hot has a fixed width whatever
the register holds, and any unrecognised class falls into ``other``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROAD_CLASSES: tuple[str, ...] = ("motorway", "trunk", "a_road", "urban", "rural", "mobile", "other")
"""Fixed road-class vocabulary; any other value in a register maps to ``other``."""

READ_FEATURES: tuple[str, ...] = (
    "tod_sin",  # time of day (local), cyclic
    "tod_cos",
    "dow_sin",  # day of week (local), cyclic
    "dow_cos",
    "log_gap_hours",  # log1p hours since the vehicle's previous read in the window (0 if none)
    "log_dist_km",  # log1p great-circle km from the previous read's camera (0 if none)
    "log_speed_kmh",  # log1p implied km/h from the previous read (gap floored at 1 min)
    "is_first",  # 1 if the vehicle has no earlier read in the window
    "same_camera_as_prev",  # 1 if the previous read was at the same camera
    "revisit",  # 1 if this vehicle was read at this camera earlier in the window
    "camera_share",  # share of the vehicle's window reads taken at this camera
    "at_modal_hour",  # 1 if the read's local hour is within one hour of the vehicle's modal hour
    *(f"road_{name}" for name in ROAD_CLASSES),
)
"""Per-read features, in column order of ``ExampleSet.sequences``."""

SUMMARY_FEATURES: tuple[str, ...] = (
    "log_reads",  # log1p reads in the window
    "log_active_days",  # log1p distinct local days with a read
    "log_reads_per_active_day",
    "top1_camera_share",  # share of reads at the vehicle's most frequent camera
    "top3_camera_share",
    "camera_entropy",  # entropy (nats) of the vehicle's reads over cameras
    "log_distinct_cameras",
    "log_distinct_cameras_per_day",  # log1p mean distinct cameras per active day
    "daily_periodicity",  # share of active days with a read within one hour of the modal hour
    "weekday_concentration",  # largest share of active days falling on one weekday
    "weekend_share",  # share of reads on Saturday or Sunday (local)
    "night_share",  # share of reads between 22:00 and 05:59 local
    "log_mean_leg_km",  # log1p mean km between consecutive reads
    "log_p95_leg_km",  # log1p 95th percentile km between consecutive reads
    "mean_log_gap_hours",  # mean of log1p hours between consecutive reads
    "revisit_share",  # share of reads at a camera this vehicle was read at before
    "active_day_share",  # active days / days in the window
    *(f"road_share_{name}" for name in ROAD_CLASSES),
)
"""Per-vehicle regularity features, in column order of ``ExampleSet.summary``.

Every one is scaled by a fixed transform (a share, a cyclic value or a log1p), never by
statistics of the data, so the model can use them under DP without a data-dependent
normalisation step that would itself leak.
"""


@dataclass(frozen=True)
class ExampleSet:
    """A force's examples: one row per vehicle, in ascending pseudonym order.

    Attributes:
        sequences: ``float32 [N, L, F]`` per-read features, oldest first, left-aligned; padded
            positions are zero.
        mask: ``bool [N, L]``, True where a position holds a read.
        summary: ``float32 [N, S]`` per-vehicle regularity features.
        vehicles: ``[N]`` vehicle pseudonyms (str), sorted ascending.
        n_reads: ``int64 [N]`` reads each vehicle has in the window (before the cap).
    """

    sequences: np.ndarray
    mask: np.ndarray
    summary: np.ndarray
    vehicles: np.ndarray
    n_reads: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.vehicles)
        if self.sequences.ndim != 3 or self.sequences.shape[0] != n:
            raise ValueError(f"sequences must be [N={n}, L, F]; got {self.sequences.shape}")
        if self.mask.shape != self.sequences.shape[:2]:
            raise ValueError(f"mask must be {self.sequences.shape[:2]}; got {self.mask.shape}")
        if self.summary.ndim != 2 or self.summary.shape[0] != n:
            raise ValueError(f"summary must be [N={n}, S]; got {self.summary.shape}")
        if self.n_reads.shape != (n,):
            raise ValueError(f"n_reads must be [N={n}]; got {self.n_reads.shape}")

    def __len__(self) -> int:
        return len(self.vehicles)

    @property
    def max_reads(self) -> int:
        """The sequence length L (the cap on reads per vehicle)."""
        return int(self.sequences.shape[1])

    @property
    def n_read_features(self) -> int:
        """F, the number of per-read features."""
        return int(self.sequences.shape[2])

    @property
    def n_summary_features(self) -> int:
        """S, the number of per-vehicle summary features."""
        return int(self.summary.shape[1])

    def subset(self, index: np.ndarray) -> ExampleSet:
        """Return the examples at ``index`` (integer positions or a boolean mask)."""
        index = np.asarray(index)
        return ExampleSet(
            sequences=self.sequences[index],
            mask=self.mask[index],
            summary=self.summary[index],
            vehicles=self.vehicles[index],
            n_reads=self.n_reads[index],
        )


def concat_examples(sets: list[ExampleSet]) -> ExampleSet:
    """Stack several example sets (same L, F and S) into one, in the order given.

    Used only for the pooled counterfactual, whose examples come from several forces; the
    result is no longer sorted by pseudonym.
    """
    if not sets:
        raise ValueError("concat_examples needs at least one example set")
    return ExampleSet(
        sequences=np.concatenate([s.sequences for s in sets]),
        mask=np.concatenate([s.mask for s in sets]),
        summary=np.concatenate([s.summary for s in sets]),
        vehicles=np.concatenate([s.vehicles for s in sets]),
        n_reads=np.concatenate([s.n_reads for s in sets]),
    )
