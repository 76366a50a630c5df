"""Pure parsers for the Windows commands whose output is text: `w32tm /query /status
/verbose`, `netsh wlan show interfaces` and `netsh winhttp show proxy`.

Their labels are localized. What does not depend on the language (the "NN%" of a signal,
the layout of netsh's proxy lines) is read by shape; what does (w32tm's labels) is read in
English, and another language is said to be unreadable rather than guessed at.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sonde.agent.collectors.windows.json_fields import Malformed
from sonde.v1 import diagnostics_pb2

# Sources that mean "no time source": the clock runs on its own.
FREE_RUNNING = ("local cmos clock", "free-running system clock", "vm ic time synchronization")
_SYNC_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M:%S")
_SIGNAL = re.compile(r"^(\d{1,3})\s?%$")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?")
_RATES = (("receive rate (mbps)", "receive_mbps"), ("transmit rate (mbps)", "transmit_mbps"))


def _labelled(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        if sep and label.strip():
            pairs.append((label.strip().lower(), value.strip()))
    return pairs


def _last_sync(text: str, utc_offset_minutes: int) -> datetime | None:
    for layout in _SYNC_FORMATS:
        try:
            local = datetime.strptime(text, layout)  # the machine's local time
        except ValueError:
            continue
        return (local - timedelta(minutes=utc_offset_minutes)).replace(tzinfo=UTC)
    return None


def w32tm_status(text: str, utc_offset_minutes: int = 0) -> diagnostics_pb2.TimeSyncFacts:
    """Source, stratum, last successful sync and phase offset; the sync time is the machine's
    local time, turned into UTC with its offset."""
    if "0x80070426" in text or "has not been started" in text:
        return diagnostics_pb2.TimeSyncFacts(service_state="stopped")
    # "Last Successful Sync Time: 12/1/2026 9:14:03 AM" has colons in its value.
    fields: dict[str, str] = {}
    for line in text.splitlines():
        label, sep, value = line.partition(": ")
        if sep:
            fields.setdefault(label.strip().lower(), value.strip())
    if "source" not in fields or "stratum" not in fields:
        raise Malformed(
            "w32tm's output has no Source or Stratum line (another language than English?)"
        )
    facts = diagnostics_pb2.TimeSyncFacts(source=fields["source"][:200], service_state="running")
    stratum = _NUMBER.match(fields["stratum"])
    facts.stratum = min(int(stratum.group()), 255) if stratum and stratum.group().isdigit() else 0
    offset = _NUMBER.match(fields.get("phase offset", ""))
    if offset:
        facts.offset_seconds = float(offset.group())
    raw_sync = fields.get("last successful sync time", "")
    facts.last_sync_text = raw_sync[:100]
    synced_at = _last_sync(raw_sync, utc_offset_minutes) if raw_sync else None
    if synced_at is not None:
        facts.last_sync_at.FromDatetime(synced_at)
    free_running = facts.source.lower().startswith(FREE_RUNNING)
    not_synchronized = fields.get("leap indicator", "").startswith("3")
    facts.synchronized = not free_running and not not_synchronized and facts.stratum > 0
    return facts


def wlan_interfaces(text: str) -> diagnostics_pb2.WifiFacts:
    """The first connected Wi-Fi interface; not connected when there is none (or no wlansvc,
    as on most desktops)."""
    blocks: list[dict[str, str]] = []
    for label, value in _labelled(text):
        if label == "name":
            blocks.append({})
        if blocks:
            blocks[-1].setdefault(label, value)
    for block in blocks:
        signal = next((m for v in block.values() if (m := _SIGNAL.match(v))), None)
        if block.get("state", "").lower() != "connected" and not (signal and "ssid" in block):
            continue
        facts = diagnostics_pb2.WifiFacts(
            connected=True,
            interface=block.get("name", "")[:200],
            ssid=block.get("ssid", "")[:64],
            radio_type=block.get("radio type", "")[:40],
            band=block.get("band", "")[:40],
        )
        facts.signal_percent = min(int(signal.group(1)), 100) if signal else 0
        channel = block.get("channel", "")
        facts.channel = int(channel) if channel.isdigit() and len(channel) < 5 else 0
        for label, field in _RATES:
            rate = _NUMBER.match(block.get(label, ""))
            if rate:
                setattr(facts, field, min(float(rate.group()), 1e6))
        return facts
    return diagnostics_pb2.WifiFacts(connected=False)


def winhttp_proxy(text: str) -> diagnostics_pb2.ProxySettings | None:
    """The machine's WinHTTP proxy; None for "Direct access (no proxy server)".

    The first "label : value" line is the proxy, the second the bypass list, in any language.
    """
    labelled = [line.partition(":")[2].strip() for line in text.splitlines() if " :" in line]
    values = [value for value in labelled if value]
    if not values:
        return None
    proxy = diagnostics_pb2.ProxySettings(source="winhttp")
    server = values[0][:500]
    if "=" in server:
        for part in server.split(";"):
            scheme, _, address = part.partition("=")
            if scheme.strip().lower() == "http":
                proxy.http_proxy = address.strip()
            elif scheme.strip().lower() == "https":
                proxy.https_proxy = address.strip()
    else:
        proxy.http_proxy = proxy.https_proxy = server
    if len(values) > 1:
        proxy.no_proxy = values[1][:2000]
    return proxy
