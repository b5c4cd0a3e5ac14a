"""What both sides of the trust boundary agree on and run.

The egress contract, the Flower settings, the location-free feature encoding, the trajectory
model and the metrics. This package never imports ``client_force``, ``server_national``,
``retention`` or ``research``; the import-linter contracts in ``pyproject.toml`` check that in CI.
"""

__version__ = "0.1.0"
