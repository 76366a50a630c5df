"""AgentService.Session: one bidirectional stream per agent, on the mTLS agent listener.

The agent's id comes from its verified client certificate only. Hello's fields are descriptive
and cleaned at intake; a Hello that claims another id changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc

from sonde.server.domain.agents import MAX_HOSTNAME_CHARS, AgentRegistry, HeartbeatRecord, HelloInfo
from sonde.server.domain.clock import utc_now
from sonde.server.domain.dispatch import AgentConnection, Dispatcher
from sonde.server.domain.heartbeats import HeartbeatBatcher
from sonde.server.domain.text import sanitized
from sonde.server.errors import Unauthenticated
from sonde.server.pki import agent_id_from_certificate
from sonde.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0

Context = grpc.aio.ServicerContext[agent_pb2.AgentMessage, agent_pb2.ServerMessage]


def certificate_agent_id(context: Context) -> str:
    certificates = list(context.auth_context().get("x509_pem_cert") or [])
    if not certificates:
        raise Unauthenticated("the agent listener needs a client certificate")
    return agent_id_from_certificate(certificates[0])


def hello_info(hello: agent_pb2.Hello) -> HelloInfo:
    """Hello's descriptive fields, as sent: the agent registry cleans and bounds them."""
    return HelloInfo(
        hostname=hello.hostname,
        platform=hello.platform,
        os_name=hello.os_name,
        os_version=hello.os_version,
        agent_version=hello.agent_version,
    )


class AgentSessionServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self, agents: AgentRegistry, dispatcher: Dispatcher, heartbeats: HeartbeatBatcher
    ) -> None:
        self._agents = agents
        self._dispatcher = dispatcher
        self._heartbeats = heartbeats

    # The read/write API of grpc.aio: the method writes with context.write and returns None.
    async def Session(  # type: ignore[override]
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage], context: Context
    ) -> None:
        try:
            agent_id = certificate_agent_id(context)
        except (Unauthenticated, ValueError) as error:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(error))
        if await self._agents.is_revoked(agent_id):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"agent {agent_id} is revoked or unknown; it must be enrolled again with a new key",
            )
        hello = await self._receive_hello(request_iterator, context)
        if hello.agent_id and hello.agent_id != agent_id:
            log.warning("agent %s said it was %r: ignored", agent_id, hello.agent_id[:64])
        info = hello_info(hello)
        hostname = sanitized(info.hostname, max_chars=MAX_HOSTNAME_CHARS) or agent_id
        connection = self._dispatcher.attach(agent_id, hostname)
        reader: asyncio.Task[None] | None = None
        try:
            await self._agents.connected(agent_id, info, context.peer(), utc_now())
            if await self._agents.is_revoked(agent_id):
                # Revoked while it was saying hello: the revocation found no stream to close.
                connection.close("revoked by an admin", revoked=True)
            log.info("agent %s (%s) connected from %s", hostname, agent_id, context.peer())
            welcome = agent_pb2.ServerMessage()
            welcome.welcome.heartbeat_interval_s = int(self._dispatcher.heartbeat_interval_s)
            welcome.welcome.server_time.FromDatetime(utc_now())
            reader = asyncio.create_task(self._read(agent_id, connection, request_iterator))
            await context.write(welcome)
            await self._write(connection, context)
        finally:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            if self._dispatcher.detach(connection):
                await asyncio.shield(self._agents.disconnected(agent_id, utc_now()))
            log.info(
                "agent %s disconnected: %s", agent_id, connection.close_reason or "stream ended"
            )
        if connection.revoked:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"agent {agent_id} was revoked")

    async def _receive_hello(
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage], context: Context
    ) -> agent_pb2.Hello:
        try:
            first = await asyncio.wait_for(anext(request_iterator), HELLO_TIMEOUT_S)
        except (TimeoutError, StopAsyncIteration):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"no Hello within {HELLO_TIMEOUT_S:.0f} s of opening the session",
            )
        if not first.HasField("hello"):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message of a session must be Hello"
            )
        return first.hello

    async def _write(self, connection: AgentConnection, context: Context) -> None:
        while True:
            message = await connection.outbound.get()
            if message is None:
                break
            await context.write(message)
        if connection.revoked:
            revoked = agent_pb2.ServerMessage()
            revoked.revoked.reason = connection.close_reason
            await context.write(revoked)

    async def _read(
        self,
        agent_id: str,
        connection: AgentConnection,
        request_iterator: AsyncIterator[agent_pb2.AgentMessage],
    ) -> None:
        try:
            async for message in request_iterator:
                connection.heard_from()
                kind = message.WhichOneof("kind")
                if kind == "heartbeat":
                    self._heartbeats.add(_heartbeat_record(agent_id, message.heartbeat))
                elif kind == "result":
                    await self._dispatcher.accept_result(agent_id, message.result, utc_now())
                    ack = agent_pb2.ServerMessage()
                    ack.ack.command_id = message.result.command_id
                    connection.send(ack)
                else:
                    log.warning("agent %s sent an unexpected %s: ignored", agent_id, kind)
        except grpc.aio.AioRpcError:
            pass
        except Exception:
            log.exception("agent %s: error while reading its stream", agent_id)
        finally:
            connection.close(connection.close_reason or "the agent closed its stream")


def _heartbeat_record(agent_id: str, beat: agent_pb2.Heartbeat) -> HeartbeatRecord:
    return HeartbeatRecord(
        agent_id=agent_id,
        at=utc_now(),
        cpu_percent=beat.cpu_percent,
        memory_percent=beat.memory_percent,
        system_disk_percent=beat.system_disk_percent,
    )
