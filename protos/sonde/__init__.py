"""Sonde: remote workstation diagnostics for IT helpdesks."""

__version__ = "0.1.0"


def version_line(program: str) -> str:
    """What `PROGRAM --version` prints: the program, this release, the distribution."""
    return f"{program} {__version__} (sonde-helpdesk)"
