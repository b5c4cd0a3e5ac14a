"""Study designs: each is one module here that calls ``register_design`` on import.

See ``registry.py`` for how to add one. Importing this package registers the built-ins.
"""

from research.study.designs import (  # noqa: F401  (registers)
    federated,
    local_only,
    pooled,
    public_start,
)
from research.study.designs.registry import (
    Design,
    DesignContext,
    UnknownDesignError,
    design_colour,
    design_names,
    get_design,
    register_design,
    unregister_design,
    uses_force_data,
)

__all__ = [
    "Design",
    "DesignContext",
    "UnknownDesignError",
    "design_colour",
    "design_names",
    "get_design",
    "register_design",
    "unregister_design",
    "uses_force_data",
]
