"""Sections 1-3 of the ICO template: the need for a DPIA, the processing, consultation."""

from __future__ import annotations

import math

from research.dpia import figures
from research.dpia.blocks import (
    Figure,
    Heading,
    Missing,
    Para,
    Section,
    Table,
)
from research.dpia.run_folder import (
    INGEST,
    LEDGER,
    MANIFEST,
    METRICS,
    RunFolder,
)
from research.dpia.sections.facts import (
    Facts,
    person,
)


# ------------------------------------------------------------------------------ section 1
def need(f: Facts, s: Section) -> None:
    run, book = f.run, f.book
    sid = s.id
    n_forces = book.add(
        sid,
        "forces in the study",
        len(run.forces),
        METRICS,
        "distinct values of column force other than 'all forces'",
        "count",
    )
    total = f.metric_row(f.designs()[0]) if f.designs() else None
    vehicles = positives = "n/a"
    if total is not None:
        vehicles = f.metric(
            sid, f.designs()[0], "vehicles", "held-out vehicles scored", kind="count"
        )
        positives = f.metric(sid, f.designs()[0], "positives", "held-out positives", kind="count")
    s.add(
        Para(
            [
                "The processing trains a model that flags vehicles whose ANPR journeys resemble "
                "the logistics of modern slavery and county-lines offending (residence-to-city "
                "shuttles, regular transport-hub pickups, collection from several residences), "
                "so that analysts can prioritise intelligence checks. It uses number-plate reads "
                "of every vehicle that passes a police camera, most of which belong to people "
                "suspected of nothing."
            ]
        ),
        Para(
            [
                "A DPIA is required: this is systematic monitoring of publicly accessible places "
                "on a large scale, with innovative technology (machine learning and federated "
                "training), matching data across police forces, for law-enforcement purposes "
                "(Data Protection Act 2018, Part 3, section 64: a DPIA is required where "
                "processing is likely to result in a high risk to individuals)."
            ]
        ),
        Para(
            [
                "Why a federated design: the founding two-force attempt failed because positives "
                "were too rare in any one force, one-year deletion made model building a race "
                "against time, camera locations are confidential, and the only remedy offered "
                "was a national database. This run simulates ",
                n_forces,
                " forces training one model together without pooling their data; the model was "
                "evaluated on ",
                vehicles,
                " held-out vehicles of which ",
                positives,
                " truly offended (synthetic ground truth).",
            ]
        ),
        Para(
            [
                "Study: ",
                f.manifest(sid, "study name", "/study", "text"),
                ", study date ",
                f.manifest(sid, "study date (as of)", "/as_of", "text"),
                ", designs compared: ",
                ", ".join(f.designs()),
                ".",
            ]
        ),
        Para(
            [
                "This run uses a synthetic world (",
                f.manifest(sid, "synthetic vehicles", "/spec/world/vehicles", "count"),
                " vehicles over ",
                f.manifest(sid, "synthetic days", "/spec/world/days", "count"),
                " days); no real person's data was processed to produce this evidence.",
            ]
        ),
        person(
            "need-summary",
            "DPIA owner (force information asset owner)",
            "Confirm the aim, the forces taking part and why the real deployment needs a "
            "DPIA; attach the project proposal.",
        ),
    )


# ------------------------------------------------------------------------------ section 2
def _contract(run: RunFolder) -> tuple[int, int, list[str], str | None]:
    """(arrays, parameters, metric names, source file) from a server status.json contract."""
    for server in run.servers:
        contract = (server.status or {}).get("contract")
        if contract and server.status_file:
            arrays = contract.get("arrays", [])
            params = sum(math.prod(a.get("shape", [])) for a in arrays)
            return len(arrays), params, list(contract.get("train_metrics", [])), server.status_file
    return 0, 0, [], None


def processing(f: Facts, s: Section) -> None:
    run, book, sid = f.run, f.book, s.id
    n_arrays, n_params, metric_names, contract_file = _contract(run)
    fed = f.ledger_final("federated")
    eps_by_force = {str(r["force"]): f"{float(r['epsilon']):.2f}" for _, r in fed.iterrows()}
    secure = bool(run.spec.get("training", {}).get("secure_aggregation", False))
    sources = (
        [MANIFEST]
        + ([LEDGER] if not fed.empty else [])
        + ([contract_file] if contract_file else [])
    )
    for src in sources:
        book.hash_file(src)
    s.add(Heading("Nature of the processing"))
    s.add(
        Figure(
            id="fig-dataflow",
            title="Data flow",
            png=figures.data_flow(
                run.forces,
                eps_by_force,
                n_arrays,
                n_params,
                metric_names or ["examples", "loss", "epsilon", "delta"],
                secure,
                f.window,
            ),
            caption="Each force ingests its own raw export, replaces every VRM by a keyed "
            "pseudonym "
            "and every camera id by a keyed token, keeps reads in encrypted day partitions "
            "that its retention purge erases, and trains locally under DP-SGD. Only model "
            "arrays and allowlisted scalars cross the trust boundary.",
            sources=sources,
        )
    )
    if contract_file:
        s.add(
            Para(
                [
                    "What reaches the national server each round, per force: ",
                    book.add(
                        sid,
                        "model arrays per update",
                        n_arrays,
                        contract_file,
                        "derived from JSON pointer /contract/arrays: number of entries",
                        "count",
                    ),
                    " float32 arrays holding ",
                    book.add(
                        sid,
                        "model parameters per update",
                        n_params,
                        contract_file,
                        "derived from JSON pointer /contract/arrays: sum of the products of each "
                        "shape",
                        "count",
                    ),
                    " parameters, and the scalars ",
                    book.add(
                        sid,
                        "scalar metrics allowed",
                        ", ".join(metric_names),
                        contract_file,
                        "derived from JSON pointer /contract/train_metrics: the names, "
                        "comma-joined",
                        "text",
                    ),
                    ". The server's egress guard rejects any reply outside this contract and "
                    "records "
                    "the rejection without its contents. Secure aggregation (SecAgg+): ",
                    f.manifest(
                        sid,
                        "secure aggregation enabled",
                        "/spec/training/secure_aggregation",
                        "text",
                    )
                    if "secure_aggregation" in run.spec.get("training", {})
                    else "not recorded",
                    ".",
                ]
            )
        )
    else:
        s.add(
            Missing(
                "the server's egress contract (server/<sweep point>/status.json)",
                "run the federated design with `anprfed study run`",
            )
        )
    s.add(Heading("Pseudonymisation and key handling"))
    s.add(
        Para(
            [
                "A vehicle is stored and trained on only as its pseudonym AES-256(epoch key, "
                "HMAC-SHA256(base key, normalised VRM)[:16]); camera ids become HMAC-SHA256 "
                "tokens. "
                "All keys are derived with HKDF from a per-force 256-bit master secret that never "
                "leaves the force, so pseudonyms cannot be linked across forces, and rotating the "
                "epoch key re-keys stored pseudonyms without the raw VRMs. Day partitions are "
                "encrypted with AES-256-GCM under per-day data keys; destroying a day's key is a "
                "cryptographic erase. Per-read features carry time, gaps, distances and road class "
                "only: no camera identity and no coordinate enters the model."
            ]
        )
    )
    rows = []
    for (days, force), (path, meta) in sorted(run.store_meta.items()):
        if days != f.window:
            continue
        rows.append(
            [
                force,
                book.add(
                    sid,
                    f"{force}: key protection",
                    meta.get("key_protection", {}).get("mode", "unknown"),
                    path,
                    "JSON pointer /key_protection/mode",
                    "text",
                ),
                book.add(
                    sid,
                    f"{force}: pseudonym key epoch",
                    meta.get("key_epoch"),
                    path,
                    "JSON pointer /key_epoch",
                    "count",
                ),
                book.add(
                    sid,
                    f"{force}: purge-log signature",
                    meta.get("signing", {}).get("algorithm", "unknown"),
                    path,
                    "JSON pointer /signing/algorithm",
                    "text",
                ),
            ]
        )
    if rows:
        s.add(
            Table(
                "Key handling per force store (store.json: public metadata only)",
                [
                    "force",
                    "master secret protected by",
                    "pseudonym key epoch",
                    "purge-log signature",
                ],
                rows,
            )
        )
        s.add(
            Para(
                [
                    "In this simulation the key files sit in the run folder (keys/); in a "
                    "deployment each force holds its own key (key file or scrypt-wrapped "
                    "passphrase) and no other party ever sees it."
                ]
            )
        )
    s.add(Heading("Scope of the processing"))
    ing = (
        run.ingest[run.ingest["retention_days"] == f.window] if not run.ingest.empty else run.ingest
    )
    if not ing.empty:
        rows = []
        for _, r in ing.iterrows():
            force = str(r["force"])
            loc = f"row retention_days={f.window}, force={force}; column "
            rows.append(
                [force]
                + [
                    book.add(sid, f"{force}: {label}", r[col], INGEST, loc + col, "count")
                    if col in r
                    else "n/a"
                    for col, label in (
                        ("input_rows", "reads exported"),
                        ("stored", "reads stored"),
                        ("rejected", "reads rejected"),
                        ("days_purged", "days purged"),
                        ("days_held_after_purge", "days held after purge"),
                    )
                ]
            )
        s.add(
            Table(
                "Reads per force (ingest and retention purge, headline retention window)",
                [
                    "force",
                    "reads exported",
                    "stored (pseudonymised)",
                    "rejected",
                    "days purged",
                    "days held",
                ],
                rows,
            )
        )
    else:
        s.add(Missing("per-force ingest counts (ingest.csv)", "run `anprfed study run`"))
    s.add(
        Para(
            [
                "Retention: reads older than ",
                f.manifest(sid, "retention window (days)", "/spec/retention/max_age_days", "count"),
                " days are purged from every force store, including derived feature caches; "
                "a model example is one vehicle's retained reads in the study window, capped "
                "at the ",
                f.manifest(sid, "reads kept per vehicle", "/spec/training/max_reads", "count"),
                " most recent reads.",
            ]
        )
    )
    s.add(Heading("Context of the processing"))
    s.add(
        Para(
            [
                "Individuals are drivers and keepers of every vehicle read by a camera; they "
                "cannot opt out and would not expect their journeys to train a national "
                "model. Camera locations are force-confidential. Public concern about "
                "automated policing is high (transparency, bias, watchlists). The toolkit is "
                "at research stage; this run is a simulation."
            ]
        )
    )
    s.add(
        person(
            "context-concerns",
            "DPIA owner",
            "Record prior concerns, relevant codes of practice (e.g. the national ANPR "
            "standards) and any approved code of conduct.",
        )
    )
    s.add(Heading("Purposes of the processing"))
    s.add(
        Para(
            [
                "To detect vehicles involved in modern slavery and county-lines logistics "
                "earlier and with fewer false alerts than a single force can, without creating "
                "a national database of reads. Benefit to individuals and society: victims "
                "found sooner; fewer innocent drivers flagged than by cruder rules."
            ]
        )
    )


# ------------------------------------------------------------------------------ section 3
def consultation(f: Facts, s: Section) -> None:
    s.add(
        Para(
            [
                "This section records who was consulted. It cannot be generated from a run: "
                "every field below is for a person to complete."
            ]
        ),
        person(
            "consult-dpo",
            "Data protection officer of each participating force",
            "When and how was the DPO consulted, and what did they advise?",
        ),
        person(
            "consult-ico",
            "Controller (chief officer)",
            "Is prior consultation with the ICO required (DPA 2018 s.65: high residual "
            "risk)? Record the outcome.",
        ),
        person(
            "consult-forces",
            "Information governance leads of each force",
            "Record agreement on the data-sharing terms of the federation (what leaves "
            "each force: model arrays and allowlisted scalars only).",
        ),
        person(
            "consult-public",
            "DPIA owner",
            "Record consultation with the public, community groups, an ethics panel or "
            "independent advisory group, and how their views changed the design.",
        ),
        person(
            "consult-experts",
            "DPIA owner",
            "Record advice from security and statistical experts (e.g. on the privacy "
            "audit and the base-rate evaluation).",
        ),
    )


# ------------------------------------------------------------------------------ section 4
