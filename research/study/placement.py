"""Each force's ClientApp runs on the Ray node that holds the force's store (multi-node Ray).

Flower's Simulation Engine (flwr 1.41) runs every virtual SuperNode's ClientApp in one shared
pool of identical Ray actors: any actor, on any node, may serve any force. On a cluster
where each machine holds only its own forces' stores, that cannot work. Ray's own answer is
custom resources: each node is started with one resource per force whose store it holds
(``ray start ... --resources '{"force-cheshire": 1, "force-cumbria": 1}'``), and an actor that
asks for ``force-cheshire`` can only be placed on that node.

:func:`placed_simulation` swaps, for the duration of one ``run_simulation`` call, the engine's
Ray backend for :class:`PlacedRayBackend`: the same backend (same Ray, same ClientApp, same
messages) with one actor per force, created with that force's resource, so each force's
ClientApp runs, and opens its store, only where the store is. Everything else (the ServerApp,
the messages, the egress guard) is Flower's, unchanged. It relies on the module path of
Flower's backend (``flwr.server.superlink.fleet.vce.backend.raybackend.RayBackend``), which
the project pins (``flwr==1.41.0``); :func:`placed_simulation` refuses another version.

``placement_report()`` tells, after a run, which Ray node ran each force (tests check it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any

import ray
from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.common.constant import PARTITION_ID_KEY
from flwr.server.superlink.fleet.vce.backend import raybackend
from flwr.simulation.ray_transport.ray_actor import VirtualClientEngineActor

from research.study.federated import force_resource

__all__ = ["PLACEMENT_KEY", "PlacedRayBackend", "force_resource", "placed_simulation"]

SUPPORTED_FLWR = "1.41.0"
# backend_config entry {"<partition id>": Ray resource name}; no "-" (Flower turns it into "_")
PLACEMENT_KEY = "force_placement"
_LAST_PLACEMENT: dict[int, str] = {}
_LOCK = threading.Lock()


@ray.remote(num_cpus=0)
class PlacedClientAppActor(VirtualClientEngineActor):
    """Flower's ClientApp actor, plus the id of the node it was placed on."""

    def node_id(self) -> str:
        """The Ray node this actor runs on."""
        return str(ray.get_runtime_context().get_node_id())


class PlacedRayBackend(raybackend.RayBackend):
    """Flower's Ray backend with one actor per force, placed by the force's Ray resource."""

    def __init__(self, backend_config: dict[str, Any]) -> None:
        config = dict(backend_config)
        placement = config.pop(PLACEMENT_KEY, None)
        if not placement:
            raise ValueError(f"backend_config needs {PLACEMENT_KEY!r}: partition id -> resource")
        self.placement = {int(k): str(v) for k, v in placement.items()}
        super().__init__(config)
        self.actors: dict[int, Any] = {}

    @property
    def num_workers(self) -> int:
        """One worker thread per force: each force's actor serves only that force."""
        return len(self.placement)

    def is_worker_idle(self) -> bool:
        """Always: a force's message waits only for its own actor."""
        return True

    def build(self, app_fn: Callable[[], ClientApp]) -> None:
        """Create each force's actor where its resource is (no shared pool)."""
        self.app_fn = app_fn
        for partition_id, resource in self.placement.items():
            self.actors[partition_id] = PlacedClientAppActor.options(  # type: ignore[attr-defined]
                resources={resource: 0.001}
            ).remote()
        nodes = ray.get([actor.node_id.remote() for actor in self.actors.values()])
        with _LOCK:
            _LAST_PLACEMENT.clear()
            _LAST_PLACEMENT.update(dict(zip(self.actors, nodes, strict=True)))

    def process_message(self, message: Message, context: Context) -> tuple[Message, Context]:
        """Run the message's ClientApp on the actor of the force it is for."""
        partition_id = int(context.node_config[PARTITION_ID_KEY])
        actor = self.actors[partition_id]
        _, out_message, updated = ray.get(
            actor.run.remote(self.app_fn, message, str(partition_id), context)
        )
        return out_message, updated

    def terminate(self) -> None:
        """Stop every force's actor, then disconnect from Ray."""
        for actor in self.actors.values():
            ray.kill(actor)
        self.actors = {}
        ray.shutdown()


def placement_report() -> dict[int, str]:
    """Partition id -> Ray node id of the last placed simulation."""
    with _LOCK:
        return dict(_LAST_PLACEMENT)


@contextmanager
def placed_simulation() -> Iterator[None]:
    """Within the block, Flower's Simulation Engine places each force's actor by resource."""
    if version("flwr") != SUPPORTED_FLWR:
        raise RuntimeError(
            f"force placement is written against flwr {SUPPORTED_FLWR}; found {version('flwr')}"
        )
    original = raybackend.RayBackend
    raybackend.RayBackend = PlacedRayBackend  # type: ignore[misc]
    try:
        yield
    finally:
        raybackend.RayBackend = original  # type: ignore[misc]
