"""The researcher's wing: everything that plays every role of a simulation.

The synthetic world (``research.synth``), the study runner (``research.study``), the membership
audit and the re-identification demonstration (``research.audit``), the DPIA evidence pack
(``research.dpia``) and the ``anprfed`` CLI root (``research.cli``). It may import every other
package; no deployable package (``federation``, ``client_force``, ``server_national``,
``privacy``, ``retention``, ``deployment``) imports it, and an import-linter contract in
``pyproject.toml`` checks that in CI.
"""
