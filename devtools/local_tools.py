"""Find a program the deploy/ tests need: on PATH, or unpacked into ./var/tools/bin by devtools/fetch_deb_tool.sh."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TOOLS_BIN = Path(__file__).resolve().parents[1] / "var" / "tools" / "bin"


def find_tool(name: str) -> str | None:
    on_path = shutil.which(name)
    if on_path:
        return on_path
    unpacked = TOOLS_BIN / name
    return str(unpacked) if unpacked.is_file() and os.access(unpacked, os.X_OK) else None
