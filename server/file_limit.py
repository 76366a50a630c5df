"""The process's open-file limit: every connection is a file, so the soft limit is raised to
the hard one at start (a soft limit of 1,024, common by default, is 1,000 idle connections).

Where there is no `resource` module (Windows) nothing is done: its limits are not per process.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# macOS reports an unlimited hard limit but refuses a soft one above OPEN_MAX.
UNLIMITED_AS = 10_240


def raise_open_file_limit() -> tuple[int, int] | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit; (soft, hard) after, None without
    `resource`. A limit the OS refuses to raise is logged and left as it was."""
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = UNLIMITED_AS if hard == resource.RLIM_INFINITY else hard
    if soft >= wanted:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as error:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, wanted, error)
        return soft, hard
    log.info("open-file limit raised from %d to %d (the hard limit)", soft, wanted)
    return wanted, hard
