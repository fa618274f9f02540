"""Files that hold credentials: written atomically and private (0600) from the first byte.

Generated passwords, tokens and keys live in files, never in the repository or on a command
line (which every local user can read in ``ps``). Whoever writes one uses
:func:`write_private`, so no credential is ever briefly world-readable and a crash mid-write
never leaves half a file behind.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, text: str | bytes) -> None:
    """Replace ``path`` with ``text`` atomically; the file is mode 0600 from its creation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(text.encode() if isinstance(text, str) else text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_private_if_changed(path: Path, text: str) -> bool:
    """:func:`write_private` unless the file already holds ``text``; True if it was written.

    Daemons re-read some files on a signal: leaving an unchanged file alone means nothing
    needs reloading.
    """
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    write_private(path, text)
    return True
