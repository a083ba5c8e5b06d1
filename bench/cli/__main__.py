"""`python -m bench.cli`. `-m` puts the working directory first on sys.path, where a folder named like one
of our top-level packages (methods/, sweeps/, reports/) would shadow it: drop that entry unless bench
itself was found there (a source checkout run in place)."""

import os
import sys
from pathlib import Path

_root = str(Path(__file__).resolve().parents[2])
if sys.path and sys.path[0] in ("", os.getcwd()) and os.path.realpath(sys.path[0] or ".") != _root:
    del sys.path[0]

from bench.cli import main  # noqa: E402

sys.exit(main())
