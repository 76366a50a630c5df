"""The short sampling window shared by the CPU and process collectors.

Both sleep through the same window in their own threads, so a snapshot pays for it once.
"""

from __future__ import annotations

SAMPLE_WINDOW_S = 0.1
