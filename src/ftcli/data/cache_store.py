"""Where ftcli's caches live, and what invalidates every entry: the code that computed it.

Both caches (rows as read and cleaned, `rows_cache`; tokenized examples, `token_cache`) write their
entries through `ftcli.io.write_atomically`, so another run reading meanwhile sees a whole entry or
none.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir() -> Path:
    """FTCLI_CACHE_DIR, else $XDG_CACHE_HOME/ftcli, else ~/.cache/ftcli; entries go in prepared/."""
    root = os.environ.get("FTCLI_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or
                                                     Path.home() / ".cache") / "ftcli"
    return Path(root).expanduser() / "prepared"


def code_version(modules: tuple[str, ...]) -> str:
    """A hash of the ftcli modules (paths relative to the package, e.g. "data/tokenize.py") whose
    behaviour decides a cached result."""
    here = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for name in modules:
        path = here / name
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()
