"""Files Ringfence creates are the owner's: never readable by other users, whatever the umask.

`make run` inherits the shell's umask (usually 022: world-readable files), so the database and
its WAL, recordings, prompts and backups came out 0644. Every entry point calls
`tighten_umask` first: a umask that already keeps others out and the group from writing
(systemd's UMask=0027, which lets the service group read) is kept, anything weaker becomes
owner-only (0600 files, 0700 folders). Subprocesses (espeak-ng, sox) inherit it. The most
sensitive files are also created with an explicit mode (`PRIVATE`), for code that runs
without an entry point (tests, a library user).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE = 0o600  # recordings, the database, backups, the session secret
_ENOUGH = 0o027  # no write for the group, nothing for others


def tighten_umask() -> int:
    """Make newly created files owner-only unless the umask already protects them; return it."""
    current = os.umask(0o077)
    wanted = current if current & _ENOUGH == _ENOUGH else current | 0o077
    os.umask(wanted)
    return wanted


def create_private(path: Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist yet (its content comes later)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE))
