"""The DPIA evidence pack: a run folder's measured facts under the ICO's seven DPIA headings.

``write_dpia(run_dir, out_dir, checker)`` writes ``dpia.html`` (self-contained, printable),
``dpia.md`` and ``evidence.json``. Reads files only; store checks come in through ``checker``
(see ``privacy.dpia.checks``), supplied by ``client_force.dpia_cli``.
"""

from privacy.dpia.checks import StoreCheck, StoreChecker
from privacy.dpia.report import DpiaPack, write_dpia
from privacy.dpia.run_folder import RunFolderError

__all__ = ["DpiaPack", "RunFolderError", "StoreCheck", "StoreChecker", "write_dpia"]
