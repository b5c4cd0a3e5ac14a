"""The DPIA evidence pack: a run folder's measured facts under the ICO's seven DPIA headings.

``write_dpia(run_dir, out_dir, checker)`` writes ``dpia.html`` (self-contained, printable),
``dpia.md`` and ``evidence.json``. Reads files only; store checks come in through ``checker``
(see ``research.dpia.checks``), supplied by ``research.dpia.cli``.
"""

from research.dpia.checks import StoreCheck, StoreChecker
from research.dpia.report import DpiaPack, write_dpia
from research.dpia.run_folder import RunFolderError

__all__ = ["DpiaPack", "RunFolderError", "StoreCheck", "StoreChecker", "write_dpia"]
