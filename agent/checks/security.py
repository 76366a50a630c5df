"""windows.defender (the antivirus is on and its signatures fresh), windows.bitlocker (the
system drive is encrypted and protected) and macos.filevault (the Mac's disk is encrypted)."""

from __future__ import annotations

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.fixes import fix_for
from sonde.agent.checks.wording import CRITICAL, OK, WARNING, finding
from sonde.v1 import diagnostics_pb2

FILEVAULT = "filevault"  # EncryptionFacts.method of the macOS collector


def _days(count: int) -> str:
    return f"{count} day{'s' if count != 1 else ''}"


def windows_defender(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    if not snapshot.HasField("antivirus"):
        return None
    av = snapshot.antivirus
    limits = ctx.thresholds
    evidence: dict[str, object] = {
        "running mode": av.running_mode or "unknown",
        "real-time protection": "on" if av.real_time_protection else "off",
        "signature age": _days(av.signature_age_days),
        "signature version": av.signature_version,
        "tamper protection": "on" if av.tamper_protected else "off",
    }
    if av.running_mode and av.running_mode.lower() != "normal":
        # Passive or EDR block mode: another antivirus is the active one.
        summary = f"{av.product} is in {av.running_mode}: another antivirus protects this PC."
        return finding("windows.defender", OK, summary, evidence)
    fix = fix_for("windows.defender", snapshot)
    if not av.service_enabled or not av.antivirus_enabled or not av.real_time_protection:
        summary = (
            f"{av.product}'s real-time protection is off and no other antivirus is active: "
            "this computer is unprotected."
        )
        return finding("windows.defender", CRITICAL, summary, evidence)
    severity = OK
    if av.signature_age_days >= limits.defender_signature_warning_days:
        severity = WARNING
    if av.signature_age_days >= limits.defender_signature_critical_days:
        severity = CRITICAL
    if severity == OK:
        summary = f"{av.product} is on and its signatures are up to date."
    else:
        summary = (
            f"{av.product}'s signatures are {_days(av.signature_age_days)} old: it cannot "
            "recognise recent threats until they are updated."
        )
    return finding("windows.defender", severity, summary, evidence, fix)


def windows_bitlocker(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    if not snapshot.HasField("encryption") or snapshot.encryption.method == FILEVAULT:
        return None
    volumes = list(snapshot.encryption.volumes)
    system = [v for v in volumes if v.volume_type == "OperatingSystem"] or [
        v for v in volumes if v.mount_point.upper().startswith("C:")
    ]
    evidence = {
        v.mount_point: f"{v.volume_status}, protection {v.protection_status.lower()}"
        + (f" ({v.encryption_percent:.0f} % encrypted)" if v.encryption_percent < 100 else "")
        for v in volumes
    }
    if not system:
        return finding(
            "windows.bitlocker", OK, "BitLocker reports no system drive to check.", evidence
        )
    drive = system[0]
    name = drive.mount_point or "The system drive"
    if drive.protection_status.lower() == "on":
        return finding("windows.bitlocker", OK, f"{name} is encrypted with BitLocker.", evidence)
    if drive.volume_status == "EncryptionInProgress":
        summary = f"BitLocker is encrypting {name} ({drive.encryption_percent:.0f} % done)."
        return finding("windows.bitlocker", OK, summary, evidence)
    if drive.volume_status == "FullyEncrypted":
        summary = (
            f"BitLocker protection of {name} is suspended: the drive is encrypted but its key "
            "is stored in the clear until protection is resumed (updates usually resume it "
            "at the next restart)."
        )
    else:
        summary = f"{name} is not encrypted: a lost or stolen laptop gives its data away."
    return finding("windows.bitlocker", WARNING, summary, evidence)


def macos_filevault(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    if not snapshot.HasField("encryption") or snapshot.encryption.method != FILEVAULT:
        return None
    volumes = list(snapshot.encryption.volumes)
    if not volumes:
        return None
    disk = volumes[0]
    evidence = {"FileVault": disk.protection_status, "status": disk.volume_status}
    if disk.volume_status == "EncryptionInProgress":
        summary = f"FileVault is encrypting the disk ({disk.encryption_percent:.0f} % done)."
        return finding("macos.filevault", OK, summary, evidence)
    if disk.protection_status == "On" and disk.volume_status != "DecryptionInProgress":
        return finding(
            "macos.filevault", OK, "The Mac's disk is encrypted with FileVault.", evidence
        )
    summary = "FileVault is off: a lost or stolen Mac gives its data away."
    if disk.volume_status == "DecryptionInProgress":
        summary = (
            f"FileVault is being turned off ({100 - disk.encryption_percent:.0f} % decrypted): "
            "a lost or stolen Mac will give its data away."
        )
    return finding("macos.filevault", WARNING, summary, evidence)
