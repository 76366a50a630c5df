"""`fdesetup status` into EncryptionFacts (method filevault, the boot volume): whether the
Mac's disk is encrypted. Recovery keys are never asked for.

    FileVault is On.
    FileVault is Off.
    FileVault is On.\nEncryption in progress: Percent completed = 42.7
    FileVault is Off.\nDecryption in progress: Percent completed = 12.0
"""

from __future__ import annotations

import re

from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.v1 import diagnostics_pb2

METHOD = "filevault"
_STATE = re.compile(r"FileVault is (On|Off)\.")
_PROGRESS = re.compile(r"(Encryption|Decryption) in progress: Percent completed = ([\d.]+)")


def encryption_facts(text: str) -> diagnostics_pb2.EncryptionFacts:
    state = _STATE.search(text)
    if state is None:
        first = text.strip().splitlines()[:1] or ["no output"]
        raise CollectorUnavailable(
            f"fdesetup status said nothing about FileVault: {first[0][:200]!r}"
        )
    on = state.group(1) == "On"
    volume = diagnostics_pb2.EncryptedVolume(
        mount_point="/",
        volume_type="OperatingSystem",
        volume_status="FullyEncrypted" if on else "FullyDecrypted",
        protection_status="On" if on else "Off",
        encryption_percent=100.0 if on else 0.0,
    )
    progress = _PROGRESS.search(text)
    if progress is not None:
        done = min(float(progress.group(2)), 100.0)
        encrypting = progress.group(1) == "Encryption"
        volume.volume_status = "EncryptionInProgress" if encrypting else "DecryptionInProgress"
        volume.encryption_percent = done if encrypting else 100.0 - done
    return diagnostics_pb2.EncryptionFacts(method=METHOD, volumes=[volume])
