"""Bad input gets a clear error with the right gRPC status, and changes nothing."""

from __future__ import annotations

import grpc
import pytest

from sonde.v1 import console_pb2
from tests.support.deployment import Deployment

MAX_MESSAGE = 4 * 1024 * 1024


def refusal(call: object) -> grpc.RpcError:
    assert callable(call)
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value


def test_unknown_agent_is_not_found(shared_sonde: Deployment) -> None:
    with shared_sonde.console() as console:
        error = refusal(
            lambda: console.RunDiagnostics(
                console_pb2.RunDiagnosticsRequest(agent="no-such-pc"), timeout=10
            )
        )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-pc" in (error.details() or "")


def test_ticket_that_does_not_exist_is_not_found(shared_sonde: Deployment) -> None:
    with shared_sonde.console() as console:
        error = refusal(
            lambda: console.GetTicket(console_pb2.GetTicketRequest(id=987654), timeout=10)
        )
        comment = refusal(
            lambda: console.CommentTicket(
                console_pb2.CommentTicketRequest(id=987654, body="hello"), timeout=10
            )
        )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "987654" in (error.details() or "")
    assert comment.code() == grpc.StatusCode.NOT_FOUND


def test_a_message_over_4_mib_is_resource_exhausted(shared_sonde: Deployment) -> None:
    with shared_sonde.console() as console:
        ticket = console.OpenTicket(
            console_pb2.OpenTicketRequest(
                title="printer jam", priority=console_pb2.TICKET_PRIORITY_P4
            ),
            timeout=10,
        ).ticket
        huge = console_pb2.CommentTicketRequest(id=ticket.id, body="x" * MAX_MESSAGE)
        assert huge.ByteSize() > MAX_MESSAGE
        error = refusal(lambda: console.CommentTicket(huge, timeout=30))
        after = console.GetTicket(console_pb2.GetTicketRequest(id=ticket.id), timeout=10)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert all(event.kind != console_pb2.TICKET_EVENT_KIND_COMMENT for event in after.timeline)


def test_a_non_positive_ticket_id_is_invalid(shared_sonde: Deployment) -> None:
    with shared_sonde.console() as console:
        error = refusal(lambda: console.GetTicket(console_pb2.GetTicketRequest(id=0), timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
