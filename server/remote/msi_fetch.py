"""The Windows host fetching the agent's MSI from the server over HTTPS, instead of the server
streaming it over WinRM to each host (docs/deploy.md, "How the MSI gets there").

The server's package listener (server/api/package_listener.py) serves the MSI at a URL that
names its SHA-256. fetch.ps1, a fixed file of the run, downloads it with the server's
certificate pinned by the SHA-256 of its DER (the host needs no trust in Sonde's CA, and a
machine in the middle with any other certificate is refused), checks the length the server
announced and the file's SHA-256, and deletes a file that does not match. Its values are
arguments, never spliced into the script.

Which way the MSI goes is chosen at preflight: `fetch` when the server offers the package
and the host reaches the listener (preflight.ps1 opens a TCP connection to it), `stream`
otherwise; an admin can force either (`sonde deploy --msi-delivery`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sonde.server.remote import winrm_powershell as ps
from sonde.server.remote.winrm import WinRMShell

FETCH_PS = b"""\
param([string]$Url, [string]$Pin, [string]$Sha256, [string]$Msi, [int64]$Size)
$ErrorActionPreference = 'Stop'
[Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12
$pinned = $Pin.ToUpperInvariant()
$request = [Net.HttpWebRequest]::Create($Url)
$request.Proxy = $null
$request.Timeout = 30000
$request.ReadWriteTimeout = 60000
$request.ServerCertificateValidationCallback = {
    param($sender, $certificate, $chain, $errors)
    $digest = [Security.Cryptography.SHA256]::Create().ComputeHash($certificate.GetRawCertData())
    ([BitConverter]::ToString($digest) -replace '-', '') -eq $pinned
}.GetNewClosure()
try {
    $response = $request.GetResponse()
} catch [Net.WebException] {
    if ($_.Exception.Status -eq [Net.WebExceptionStatus]::TrustFailure) {
        [Console]::Error.Write("the server at ${Url} did not show the pinned certificate")
        exit 3
    }
    [Console]::Error.Write("cannot fetch ${Url}: $($_.Exception.Message)")
    exit 4
}
if ($response.ContentLength -ne $Size) {
    $response.Close()
    [Console]::Error.Write("the server announced $($response.ContentLength) bytes, not ${Size}")
    exit 5
}
$in = $response.GetResponseStream()
$out = [IO.File]::Create($Msi)
try { $in.CopyTo($out) } finally { $out.Close(); $in.Close(); $response.Close() }
$found = (Get-FileHash -LiteralPath $Msi -Algorithm SHA256).Hash
if ($found -ne $Sha256.ToUpperInvariant()) {
    Remove-Item -LiteralPath $Msi -Force
    [Console]::Error.Write("the file fetched has SHA-256 ${found}, not ${Sha256}: deleted")
    exit 2
}
"""

# fetch.ps1's exit codes, in the words of the report.
FETCH_EXIT = {
    2: "the file fetched did not have the MSI's SHA-256 (deleted on the host)",
    3: "the server's certificate was not the one pinned: something in between answered",
    4: "the host could not fetch it",
    5: "the length announced was not the MSI's",
}


class MsiDelivery(enum.StrEnum):
    """How the MSI reaches a Windows host: as the admin asked (auto, fetch, stream), and as
    it went (fetched, streamed)."""

    AUTO = "auto"
    FETCH = "fetch"
    STREAM = "stream"


@dataclass(frozen=True)
class PackageOffer:
    """Where the server's package listener serves the MSI, and the certificate it shows."""

    url: str
    certificate_sha256: str  # of the listener's certificate, DER: what fetch.ps1 pins


class DeliveryRefused(Exception):
    """Fetching was asked for and cannot be: preflight's `package` check."""


def chosen_delivery(
    asked: MsiDelivery, offer: PackageOffer | None, reaches_server: bool, label: str
) -> MsiDelivery:
    """FETCH or STREAM for this host; DeliveryRefused when fetch was asked and cannot be."""
    if asked is MsiDelivery.STREAM:
        return MsiDelivery.STREAM
    if offer is not None and reaches_server:
        return MsiDelivery.FETCH
    if asked is MsiDelivery.AUTO:
        return MsiDelivery.STREAM
    if offer is None:
        raise DeliveryRefused(
            f"{label}: fetching the MSI was asked for, but this server has no package "
            "listener: start it with --package-listen HOST:PORT (docs/deploy.md)"
        )
    raise DeliveryRefused(
        f"{label} cannot open a connection to {offer.url.split('/packages/')[0]}: open the "
        "firewall to the package listener, or deploy with --msi-delivery stream"
    )


@dataclass(frozen=True)
class FetchResult:
    exit_code: int
    said: str  # the host's own words, stderr


async def fetch_on_host(
    shell: WinRMShell, offer: PackageOffer, *, sha256: str, size: int, path: str
) -> FetchResult:
    """Run fetch.ps1 on the host: the MSI from offer.url to `path`, checked."""
    document = ps.script_document(
        "fetch.ps1",
        FETCH_PS,
        [
            "-Url",
            offer.url,
            "-Pin",
            offer.certificate_sha256,
            "-Sha256",
            sha256,
            "-Msi",
            path,
            "-Size",
            str(size),
        ],
    )
    ran = await shell.run_document(document, timeout_s=600, max_output=16 * 1024)
    return FetchResult(ran.exit_code, ran.stderr.decode("utf-8", "replace")[:500])


def fetch_failure(result: FetchResult, label: str) -> str:
    why = FETCH_EXIT.get(result.exit_code, f"fetch.ps1 exit code {result.exit_code}")
    said = f": {result.said.strip()}" if result.said.strip() else ""
    return f"{label}: {why}{said}"
