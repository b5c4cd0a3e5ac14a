"""What both sides of the trust boundary agree on.

The study spec, the synthetic world generator, the location-free feature encoding, the
trajectory model, the Flower app wiring, the study runner and the ``anprfed`` CLI root.
This package never imports ``client_force``, ``server_national`` or ``retention``; the
import-linter contracts in ``pyproject.toml`` check that in CI.
"""

__version__ = "0.1.0"
