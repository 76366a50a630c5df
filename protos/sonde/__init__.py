"""Sonde: remote workstation diagnostics for IT helpdesks."""

__version__ = "0.1.0"
