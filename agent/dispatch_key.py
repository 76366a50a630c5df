"""The server's dispatch public key this agent pinned at enrollment (dispatch.pub in its state
folder).

The agent runs only run orders signed by this key (sonde.catalog.envelope). Kept, checked and
replaced as every pinned key is (agent/pinned_key.py): the first one stays, another is refused
unless `enroll --force`.
"""

from __future__ import annotations

from sonde.agent.paths import DISPATCH_KEY_FILE
from sonde.agent.pinned_key import PinnedKey, PinnedKeyRefused


class DispatchKeyRefused(PinnedKeyRefused):
    """The dispatch key offered, or the one kept, is refused: one line saying why."""


DISPATCH_KEY = PinnedKey(DISPATCH_KEY_FILE, "dispatch", DispatchKeyRefused)
