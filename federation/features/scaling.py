"""Fixed reference centres and scales for the model's inputs (never fitted to a force's data).

The model standardises every feature as ``(x - centre) / scale`` before its first layer: with
features on very different scales (log gaps up to ~9, shares in [0, 1]) and rare positives,
an unstandardised model spent its whole training budget on scale and bias and barely fitted
the training set (held-out PR-AUC 0.05 versus 0.5 standardised, non-private, pooled default
world). Estimating the statistics from a force's data would be an un-accounted release, and
forces would each get different ones; so they are constants, computed once from the
synthetic default world (``research.synth.DEFAULT_WORLD``, all six forces, 365-day window,
``max_reads=128``) -- public data -- rounded, and frozen here. Both sides of the federation
therefore agree on them by construction, like any other part of the model definition.

A deployment may re-derive them from public or synthetic data closer to its own; they only
need to put features on a roughly unit scale, not to be exact. A scale is floored at 0.1 and a
feature that never varied in the reference world (e.g. ``road_rural``) gets scale 1.
"""

from __future__ import annotations

import numpy as np

from federation.features.schema import READ_FEATURES, SUMMARY_FEATURES

MIN_SCALE = 0.1

READ_REFERENCE: dict[str, tuple[float, float]] = {
    "tod_sin": (-0.119, 0.645),
    "tod_cos": (-0.498, 0.568),
    "dow_sin": (-0.0513, 0.713),
    "dow_cos": (0.0397, 0.698),
    "log_gap_hours": (2.43, 2.28),
    "log_dist_km": (1.87, 1.08),
    "log_speed_kmh": (1.87, 2.19),
    "is_first": (0.0163, 0.126),
    "same_camera_as_prev": (0.109, 0.315),
    "revisit": (0.794, 0.405),
    "camera_share": (0.159, 0.164),
    "at_modal_hour": (0.46, 0.501),
    "road_motorway": (0.463, 0.498),
    "road_trunk": (0.0345, 0.184),
    "road_a_road": (0.0825, 0.276),
    "road_urban": (0.318, 0.464),
    "road_rural": (0.0, 0.0),
    "road_mobile": (0.103, 0.303),
    "road_other": (0.0, 0.0),
}

SUMMARY_REFERENCE: dict[str, tuple[float, float]] = {
    "log_reads": (3.34, 1.55),
    "log_active_days": (2.72, 1.42),
    "log_reads_per_active_day": (1.11, 0.268),
    "top1_camera_share": (0.339, 0.226),
    "top3_camera_share": (0.644, 0.228),
    "camera_entropy": (1.88, 0.838),
    "log_distinct_cameras": (2.38, 0.874),
    "log_distinct_cameras_per_day": (1.07, 0.247),
    "daily_periodicity": (0.586, 0.239),
    "weekday_concentration": (0.435, 0.254),
    "weekend_share": (0.459, 0.318),
    "night_share": (0.0577, 0.142),
    "log_mean_leg_km": (2.2, 0.747),
    "log_p95_leg_km": (2.9, 0.919),
    "mean_log_gap_hours": (2.68, 1.52),
    "revisit_share": (0.517, 0.311),
    "active_day_share": (0.103, 0.149),
    "road_share_motorway": (0.501, 0.312),
    "road_share_trunk": (0.0529, 0.163),
    "road_share_a_road": (0.109, 0.193),
    "road_share_urban": (0.241, 0.252),
    "road_share_rural": (0.0, 0.0),
    "road_share_mobile": (0.0964, 0.0983),
    "road_share_other": (0.0, 0.0),
}


def _arrays(
    reference: dict[str, tuple[float, float]], names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    missing = [n for n in names if n not in reference]
    if missing:
        raise KeyError(f"no reference scaling for feature(s) {missing}")
    centre = np.array([reference[n][0] for n in names], dtype=np.float32)
    scale = np.array([reference[n][1] for n in names], dtype=np.float32)
    scale = np.where(scale == 0.0, 1.0, np.maximum(scale, MIN_SCALE)).astype(np.float32)
    return centre, scale


def read_scaling() -> tuple[np.ndarray, np.ndarray]:
    """(centre, scale) ``float32 [F]`` in ``READ_FEATURES`` order."""
    return _arrays(READ_REFERENCE, READ_FEATURES)


def summary_scaling() -> tuple[np.ndarray, np.ndarray]:
    """(centre, scale) ``float32 [S]`` in ``SUMMARY_FEATURES`` order."""
    return _arrays(SUMMARY_REFERENCE, SUMMARY_FEATURES)
