"""What an escalation did to a ticket's assignee, in words (the confirmation and the timeline)."""

from __future__ import annotations


def handover(previous: str, now: str) -> str:
    """`previous`: who had the ticket before; `now`: who has it after ('' for nobody)."""
    if previous and previous == now:
        return f"{previous} keeps it"
    if previous and now:
        return f"assigned to {now}; {previous} no longer has it"
    if previous:
        return f"{previous} no longer has it: it waits in the L2 queue"
    if now:
        return f"assigned to {now}"
    return "it waits in the L2 queue"
