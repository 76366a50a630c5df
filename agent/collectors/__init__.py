"""Facts about the workstation: one module per area, listed explicitly in registry.py."""
