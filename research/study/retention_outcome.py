"""What one-year deletion does to the positives a force can learn from.

A planted offender becomes a usable training positive only when its conviction is known *and*
the force still holds reads from its offence period. With a retention window of ``W`` days, a
read taken at ``t`` is held until ``t + W``. This module counts, per force and across forces,
offenders whose conviction arrived while their offence-period reads were still held, against
those whose reads had already been deleted, and those not yet convicted by the study date.

It works on the simulation's ground truth (the researcher's view of the synthetic world); its
output holds counts only.

``convictions_in_log`` is what the force's intelligence log holds on the study date: every
convicted offender the force has read at all, which is ``convictions_loaded`` in ingest.csv.
It can exceed ``convicted_by_study_date``, which counts only offenders the force read *during
their offence period* (the reads a model could learn the offence from); the difference is
``convicted_not_read_while_offending``. The usable positives on the study date are those
convictions whose offence-period reads are still held.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandas as pd

ALL_FORCES = "all forces"


@dataclass(frozen=True)
class OffenderReads:
    """One force's reads of planted offenders: ``vrm`` and ``read_at`` (UTC), raw (sim only)."""

    force: str
    reads: pd.DataFrame


def _classify(
    truth: pd.DataFrame, reads: pd.DataFrame, window_days: int, as_of: date
) -> pd.DataFrame:
    """Per offender in ``reads``: convicted by ``as_of``? reads held at conviction? at as-of?"""
    if reads.empty:
        return pd.DataFrame(
            columns=["vrm", "convicted", "held_at_conviction", "held_at_study_date"]
        )
    window = pd.Timedelta(days=window_days)
    joined = reads.merge(truth, on="vrm", how="inner")
    in_offence = (joined["read_at"] >= joined["offence_start_ts"]) & (
        joined["read_at"] < joined["offence_end_ts"] + pd.Timedelta(days=1)
    )
    offence_reads = joined[in_offence]
    last_offence_read = offence_reads.groupby("vrm")["read_at"].max()
    per = truth.set_index("vrm").loc[last_offence_read.index].copy()
    per["last_offence_read"] = last_offence_read
    as_of_ts = pd.Timestamp(as_of, tz="UTC")
    per["convicted"] = per["conviction_ts"] <= as_of_ts
    # A read taken at t is still held at instant T when t > T - W.
    per["held_at_conviction"] = per["last_offence_read"] > per["conviction_ts"] - window
    per["held_at_study_date"] = per["last_offence_read"] > as_of_ts - window
    return per.reset_index()[["vrm", "convicted", "held_at_conviction", "held_at_study_date"]]


def _counts(scope: str, per: pd.DataFrame, window_days: int, in_log: int) -> dict[str, object]:
    convicted = per[per["convicted"].astype(bool)]
    return {
        "retention_days": window_days,
        "force": scope,
        "convictions_in_log": in_log,
        "convicted_not_read_while_offending": in_log - len(convicted),
        "offenders_seen": len(per),
        "convicted_by_study_date": len(convicted),
        "conviction_arrived_while_held": int(convicted["held_at_conviction"].sum()),
        "lost_to_deletion_before_conviction": int((~convicted["held_at_conviction"]).sum()),
        "usable_positives_at_study_date": int((convicted["held_at_study_date"].astype(bool)).sum()),
        "not_yet_convicted": int(len(per) - len(convicted)),
    }


def retention_outcome(
    truth: pd.DataFrame,
    offender_reads: list[OffenderReads],
    window_days: int,
    as_of: date,
) -> list[dict[str, object]]:
    """Count surviving and lost positives per force and across forces (an offender counts once).

    ``truth`` has ``vrm``, ``offence_start``, ``offence_end`` and ``conviction_date``.
    """
    t = truth.copy()
    t["offence_start_ts"] = pd.to_datetime(t["offence_start"]).dt.tz_localize("UTC")
    t["offence_end_ts"] = pd.to_datetime(t["offence_end"]).dt.tz_localize("UTC")
    t["conviction_ts"] = pd.to_datetime(t["conviction_date"]).dt.tz_localize("UTC")
    t = t[["vrm", "offence_start_ts", "offence_end_ts", "conviction_ts"]]
    rows = []
    per_force = []
    as_of_ts = pd.Timestamp(as_of, tz="UTC")
    convicted_vrms = set(t.loc[t["conviction_ts"] <= as_of_ts, "vrm"])
    logged: set[str] = set()
    for item in offender_reads:
        per = _classify(t, item.reads, window_days, as_of)
        per_force.append(per)
        in_log = convicted_vrms & set(item.reads["vrm"]) if not item.reads.empty else set()
        logged |= in_log
        rows.append(_counts(item.force, per, window_days, len(in_log)))
    if per_force:
        everyone = pd.concat(per_force, ignore_index=True)
        pooled = everyone.groupby("vrm", as_index=False).agg(
            convicted=("convicted", "max"),
            held_at_conviction=("held_at_conviction", "max"),
            held_at_study_date=("held_at_study_date", "max"),
        )
        rows.append(_counts(ALL_FORCES, pooled, window_days, len(logged)))
    return rows
