"""ConsoleService methods for the outbound webhooks (server/webhooks/endpoints.py): add and
rotate (the secret in the answer this once), list with each one's delivery, remove."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc

from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.services import ServerServices
from sonde.server.webhooks.endpoints import DEFAULT_OVERLAP, WebhookInfo
from sonde.v1 import console_pb2

Context = grpc.aio.ServicerContext[Any, Any]


def webhook(info: WebhookInfo) -> console_pb2.Webhook:
    message = console_pb2.Webhook(
        id=info.id,
        url=info.url,
        events=list(info.events),
        custom_ca=bool(info.ca_pem),
        created_by=info.created_by,
        delivered=info.delivered,
        pending=info.pending,
        failures=info.failures,
        last_error=info.last_error,
    )
    message.created_at.FromDatetime(info.created_at)
    for field, at in (
        (message.next_attempt_at, info.next_attempt_at),
        (message.last_success_at, info.last_success_at),
        (message.last_error_at, info.last_error_at),
        (message.previous_secret_until, info.previous_until),
    ):
        if at is not None:
            field.FromDatetime(at)
    return message


class WebhookMethods:
    """Mixed into ConsoleServicer; `_s` is the server's services."""

    _s: ServerServices

    @translate_errors
    async def AddWebhook(
        self, request: console_pb2.AddWebhookRequest, context: Context
    ) -> console_pb2.AddWebhookResponse:
        added = await self._s.webhooks.add(
            current_principal(),
            request.url,
            events=list(request.events),
            ca_pem=request.ca_pem,
            secret=request.secret,
        )
        return console_pb2.AddWebhookResponse(webhook=webhook(added.webhook), secret=added.secret)

    @translate_errors
    async def ListWebhooks(
        self, request: console_pb2.ListWebhooksRequest, context: Context
    ) -> console_pb2.ListWebhooksResponse:
        current_principal()
        found = await self._s.webhooks.list()
        return console_pb2.ListWebhooksResponse(webhooks=[webhook(info) for info in found])

    @translate_errors
    async def RemoveWebhook(
        self, request: console_pb2.RemoveWebhookRequest, context: Context
    ) -> console_pb2.RemoveWebhookResponse:
        removed = await self._s.webhooks.remove(current_principal(), request.id)
        return console_pb2.RemoveWebhookResponse(webhook=webhook(removed))

    @translate_errors
    async def RotateWebhookSecret(
        self, request: console_pb2.RotateWebhookSecretRequest, context: Context
    ) -> console_pb2.RotateWebhookSecretResponse:
        overlap = DEFAULT_OVERLAP
        if request.HasField("overlap_s"):
            overlap = timedelta(seconds=request.overlap_s)
        rotated = await self._s.webhooks.rotate(
            current_principal(), request.id, overlap=overlap, secret=request.secret
        )
        return console_pb2.RotateWebhookSecretResponse(
            webhook=webhook(rotated.webhook), secret=rotated.secret
        )
