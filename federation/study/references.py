"""Loading the roles' code by reference, the way Flower loads a ClientApp or ServerApp.

The study runner plays every role of a simulation, but the shared ``federation`` package must
not import force-side or server-side packages (the trust boundary is checked on the import
graph). It names them here and loads them at run time.
"""

from __future__ import annotations

import importlib
from typing import Any

SIMULATED_FORCE = "client_force.simulated_force:SimulatedForce"
CLIENT_APP = "client_force.client_app:app"
SERVER_APP = "server_national.server_app:app"


def load_reference(reference: str) -> Any:
    """Import ``module:attribute`` and return the attribute, with a clear error if missing."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"reference {reference!r} must look like 'package.module:attribute'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ImportError(f"{module_name} has no attribute {attribute!r}") from None
