"""The browser the dashboard tests drive: Debian's chromium, installed with apt-get when missing.

Playwright for Python drives it through `executable_path`; `playwright install` is never run (it
downloads browsers from the internet).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ops.stack.services import apt_install

CHROMIUM = Path("/usr/bin/chromium")
# root (CI, containers) cannot use chromium's sandbox; the pages it opens are our own
LAUNCH_ARGS = ("--no-sandbox", "--disable-dev-shm-usage")


def ensure_chromium() -> Path:
    """The chromium executable, installed with apt-get first if it is missing."""
    found = shutil.which("chromium")
    if found:
        return Path(found)
    apt_install("chromium")
    if not CHROMIUM.exists():
        raise RuntimeError(f"apt-get installed chromium but {CHROMIUM} is missing")
    return CHROMIUM
