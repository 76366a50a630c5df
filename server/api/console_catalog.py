"""ConsoleService's catalog: publish a signed bundle (catalog.manage), list and show scripts
(scripts.read; what the caller may run follows its scripts.run.<risk>)."""

from __future__ import annotations

from typing import Any

import grpc

from sonde.catalog.manifest import Parameter, ParameterType
from sonde.server.api.auth import current_principal
from sonde.server.api.errors import translate_errors
from sonde.server.domain.catalog import CatalogScript
from sonde.server.services import ServerServices
from sonde.v1 import console_pb2

Context = grpc.aio.ServicerContext[Any, Any]


def _parameter(parameter: Parameter) -> console_pb2.ScriptParameter:
    shown = console_pb2.ScriptParameter(
        name=parameter.name,
        type=parameter.type.value,
        description=parameter.description,
        required=parameter.required,
        pattern=parameter.pattern or "",
        choices=list(parameter.choices),
        secret=parameter.secret,
    )
    if parameter.default is not None:
        shown.has_default = True
        if parameter.secret:
            shown.default = "***"
        elif parameter.type is ParameterType.BOOL:
            shown.default = "true" if parameter.default else "false"
        else:
            shown.default = str(parameter.default)
    if parameter.minimum is not None:
        shown.has_minimum, shown.minimum = True, parameter.minimum
    if parameter.maximum is not None:
        shown.has_maximum, shown.maximum = True, parameter.maximum
    return shown


def catalog_script(script: CatalogScript) -> console_pb2.CatalogScript:
    manifest = script.manifest
    shown = console_pb2.CatalogScript(
        id=manifest.id,
        version=manifest.version,
        title=manifest.title,
        description=manifest.description,
        risk=manifest.risk.value,
        platforms=[p.value for p in manifest.platforms],
        interpreter=manifest.interpreter.value,
        timeout_s=manifest.timeout_s,
        needs_admin=manifest.needs_admin,
        disruptive=manifest.disruptive,
        reboot_required=manifest.reboot_required,
        idempotent=manifest.idempotent,
        fixes=list(manifest.fixes),
        verify=list(manifest.verify),
        parameters=[_parameter(p) for p in manifest.parameters],
        self_service=manifest.self_service,
        user_session=manifest.user_session,
        key_id=script.key_id,
        published_by=script.published_by,
    )
    shown.published_at.FromDatetime(script.published_at)
    return shown


def _version(script: CatalogScript) -> console_pb2.ScriptVersion:
    shown = console_pb2.ScriptVersion(
        version=script.manifest.version, published_by=script.published_by, key_id=script.key_id
    )
    shown.published_at.FromDatetime(script.published_at)
    return shown


class CatalogMethods:
    """Mixed into ConsoleServicer; `_s` is the server's services."""

    _s: ServerServices

    @translate_errors
    async def PublishCatalog(
        self, request: console_pb2.PublishCatalogRequest, context: Context
    ) -> console_pb2.PublishCatalogResponse:
        publication = await self._s.catalog.publish(current_principal(), request.bundle)
        return console_pb2.PublishCatalogResponse(
            key_id=publication.key_id,
            scripts=[
                console_pb2.PublishedScript(script_id=p.script_id, version=p.version, added=p.added)
                for p in publication.scripts
            ],
        )

    @translate_errors
    async def ListScripts(
        self, request: console_pb2.ListScriptsRequest, context: Context
    ) -> console_pb2.ListScriptsResponse:
        listed = await self._s.catalog.list(
            current_principal(), platform=request.platform, all_risks=request.all_risks
        )
        return console_pb2.ListScriptsResponse(
            scripts=[
                console_pb2.ListedScript(
                    script=catalog_script(s.script), may_run=s.may_run, versions=s.versions
                )
                for s in listed
            ]
        )

    @translate_errors
    async def GetScript(
        self, request: console_pb2.GetScriptRequest, context: Context
    ) -> console_pb2.GetScriptResponse:
        found = await self._s.catalog.get(current_principal(), request.script_id, request.version)
        return console_pb2.GetScriptResponse(
            script=catalog_script(found.script),
            manifest=found.script.manifest_bytes,
            body=found.script.script,
            signature=found.script.signature,
            versions=[_version(v) for v in found.versions],
            may_run=found.may_run,
        )
