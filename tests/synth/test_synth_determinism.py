"""Same seed -> byte-identical files; another seed -> another world."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from research.synth.config import WorldConfig
from research.synth.world import generate_world

CFG = WorldConfig(vehicles=150, days=9, prevalence=0.05, seed=3)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a = generate_world(CFG, tmp_path / "a")
    b = generate_world(CFG, tmp_path / "b")
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.reads > 0 and a.reads == b.reads
    assert fa.keys() == fb.keys()
    assert "world.json" in fa and "truth/labels.parquet" in fa
    different = [k for k in fa if fa[k] != fb[k]]
    assert different == []


def test_different_seed_gives_different_world(tmp_path: Path) -> None:
    generate_world(CFG, tmp_path / "a")
    generate_world(replace(CFG, seed=4), tmp_path / "b")
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    reads = [k for k in fa if k.endswith("reads.parquet")]
    assert reads and all(fa[k] != fb[k] for k in reads)
    assert fa["truth/vehicles.parquet"] != fb["truth/vehicles.parquet"]


def test_existing_output_is_protected(tmp_path: Path) -> None:
    out = tmp_path / "w"
    generate_world(CFG, out)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_world(CFG, out)
    generate_world(CFG, out, overwrite=True)  # allowed: it is a world
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a world")
    with pytest.raises(FileExistsError, match=r"world\.json"):
        generate_world(CFG, foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "not a world"
