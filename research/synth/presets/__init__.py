"""Packaged world presets (JSON data: forces, towns, transport hubs, road corridors).

Each preset file ``<name>.json`` holds::

    {"name": ..., "description": ..., "cities": [town, ...],
     "forces": [{"slug", "name", "code",
                 "towns": [[name, lat, lon, population_thousands], ...],
                 "hubs": [[name, lat, lon, "airport"|"rail"|"port", attach_town, road_class], ...],
                 "junctions": [[name, lat, lon], ...]}],
     "roads": [{"name", "class": "motorway"|"trunk"|"a_road"|"urban", "via": [node, ...]}]}

Coordinates are approximate town centres; roads are straight segments between consecutive
``via`` nodes. :func:`load_preset` validates the file and names the offending entry on error.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

ROAD_CLASSES = ("motorway", "trunk", "a_road", "urban")
HUB_TYPES = ("airport", "rail", "port")


class PresetError(ValueError):
    """A preset is unknown or malformed."""


def list_presets() -> list[str]:
    """Names of the packaged presets."""
    return sorted(
        p.name.removesuffix(".json")
        for p in files(__package__).iterdir()
        if p.name.endswith(".json")
    )


def load_preset(name: str) -> dict[str, Any]:
    """Load and validate the packaged preset ``name`` (e.g. ``north-west``)."""
    available = list_presets()
    if name not in available:
        raise PresetError(f"unknown preset {name!r}; available: {', '.join(available)}")
    data = json.loads(files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8"))
    validate_preset(data, source=f"{name}.json")
    return data


def validate_preset(data: dict[str, Any], source: str = "preset") -> None:
    """Check a preset's structure and cross-references; raise :class:`PresetError` if bad."""
    for key in ("name", "forces", "roads", "cities"):
        if key not in data:
            raise PresetError(f"{source}: missing top-level field {key!r}")
    names: set[str] = set()
    codes: set[str] = set()
    for fi, force in enumerate(data["forces"]):
        where = f"{source}: forces[{fi}]"
        for key in ("slug", "name", "code", "towns", "hubs", "junctions"):
            if key not in force:
                raise PresetError(f"{where}: missing field {key!r}")
        if force["code"] in codes:
            raise PresetError(f"{where}: duplicate force code {force['code']!r}")
        codes.add(force["code"])
        if not force["towns"]:
            raise PresetError(f"{where}: a force needs at least one town")
        for kind in ("towns", "hubs", "junctions"):
            for ni, node in enumerate(force[kind]):
                if node[0] in names:
                    raise PresetError(f"{where}.{kind}[{ni}]: duplicate node name {node[0]!r}")
                names.add(node[0])
                lat, lon = float(node[1]), float(node[2])
                if not (49.0 <= lat <= 61.0 and -9.0 <= lon <= 2.5):
                    raise PresetError(f"{where}.{kind}[{ni}]: coordinates outside Great Britain")
        for ni, hub in enumerate(force["hubs"]):
            if hub[3] not in HUB_TYPES:
                raise PresetError(f"{where}.hubs[{ni}]: hub type must be one of {HUB_TYPES}")
            if hub[5] not in ROAD_CLASSES:
                raise PresetError(f"{where}.hubs[{ni}]: road class must be one of {ROAD_CLASSES}")
    for fi, force in enumerate(data["forces"]):
        for ni, hub in enumerate(force["hubs"]):
            if hub[4] not in names:
                raise PresetError(
                    f"{source}: forces[{fi}].hubs[{ni}]: attach node {hub[4]!r} is not defined"
                )
    for ri, road in enumerate(data["roads"]):
        if road.get("class") not in ROAD_CLASSES:
            raise PresetError(f"{source}: roads[{ri}]: class must be one of {ROAD_CLASSES}")
        if len(road.get("via", [])) < 2:
            raise PresetError(f"{source}: roads[{ri}]: needs at least two 'via' nodes")
        for node in road["via"]:
            if node not in names:
                raise PresetError(
                    f"{source}: roads[{ri}] ({road.get('name')}): unknown node {node!r}"
                )
    for city in data["cities"]:
        if city not in names:
            raise PresetError(f"{source}: cities: unknown town {city!r}")
