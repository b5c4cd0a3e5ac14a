"""The national aggregator: Flower ServerApp, strategy, egress guard, ledger view, checkpoints.

It imports ``federation`` and ``privacy.dp`` only: never ``client_force``, ``retention`` or
the pseudonymisation and key code (checked by import-linter in CI).
"""
