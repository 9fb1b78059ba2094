"""Private state on disk: the data directory, the signing-key file, the SQLite database.

keyproof creates them for its own user only (directories 0700, files 0600). One that
already exists with a group or other permission bit was made or changed by someone
else; it is refused with the command that fixes it, never used as it is.
"""

from __future__ import annotations

import os
import shlex
import stat

from keyproof.errors import ConfigurationError

__all__ = ["require_private"]


def require_private(path: str | os.PathLike[str]) -> None:
    """Raise ``insecure_permissions`` if ``path`` exists and group or others have any access."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return  # nothing there yet: whoever creates it makes it private
    except OSError as exc:
        problem = f"cannot inspect {path}: {exc.strerror}"
        raise ConfigurationError("invalid_setting", problem) from None
    if stat.S_IMODE(mode) & 0o077:
        wanted = "700" if stat.S_ISDIR(mode) else "600"
        raise ConfigurationError(
            "insecure_permissions",
            f"{path} has mode {stat.S_IMODE(mode):04o}, open to group or others: "
            f"chmod {wanted} {shlex.quote(os.fspath(path))}",
        )
