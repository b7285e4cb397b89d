"""Where tests find the real benchmark files: ../shared/data beside the repository (CI lays a copy
of shared/ there), or $ANTISD_SHARED_DATA. Tests that need them skip when they are absent."""

import os
from pathlib import Path

SHARED_DATA = Path(os.environ.get("ANTISD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
