"""`sonde fix` and `sonde run` with `winrm` through the console API (SQLite and PostgreSQL): the
finding of a Windows machine without an agent (stuck print jobs in the recorded collect.ps1
document the WinRS endpoint answers with) is fixed by the catalog script it names, which the
server runs over WinRM and verifies over the same connection; a run asked with both `ssh` and
`winrm`, or `credential` alone, is refused naming what to give."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from sonde.agent.remediation import powershell
from sonde.catalog.bundle import CatalogSource, encode_bundle, sign_entries
from sonde.catalog.folder import load_catalog_folder
from sonde.v1 import console_pb2 as pb
from tests.integration.console.harness import Console
from tests.support.winrs_endpoint import WinRSEndpoint, WinRSReply
from tests.support.winrs_programs import LaunchedRun, serve_transport, windows_collection

pytestmark = pytest.mark.timeout(120)

ADMIN, BOB = Console.as_user("admin"), Console.as_user("bob")
USER, PASSWORD = "helpdesk", "a-throwaway-winrs-password"
REPOSITORY = Path(__file__).resolve().parents[3]
DOCUMENTS = REPOSITORY / "tests" / "fixtures" / "windows"


class Printer:
    """Stuck jobs in every collection until the spooler script ran."""

    def __init__(self) -> None:
        self.bound: list[dict[str, str | int | bool]] = []

    def program(self, run: LaunchedRun) -> WinRSReply:
        document = "healthy_windows11.json" if self.bound else "print_jobs_stuck.json"
        return windows_collection((DOCUMENTS / document).read_bytes(), self._script)(run)

    def _script(self, run: LaunchedRun) -> WinRSReply:
        if "-ParameterFile" not in run.argv:
            return WinRSReply(stderr=b"unknown command", exit_code=1)
        self.bound.append(powershell.read_parameter_file(run.file_after("-ParameterFile")))
        return WinRSReply(stdout=b"Spooler restarted\n")


@pytest.fixture
def printer() -> Printer:
    return Printer()


@pytest.fixture
def winrs(printer: Printer) -> Iterator[WinRSEndpoint]:
    with WinRSEndpoint(USER, PASSWORD) as endpoint:
        serve_transport(endpoint, printer.program, {})
        yield endpoint


async def _machine(console: Console, winrs: WinRSEndpoint) -> tuple[str, str]:
    stub = console.stub
    spooler = [
        CatalogSource(entry.manifest_bytes, entry.script_bytes)
        for entry in load_catalog_folder(REPOSITORY / "scripts")
        if entry.manifest.id == "restart-print-spooler"
    ]
    bundle = encode_bundle(sign_entries(console.catalog_key, spooler))
    await stub.PublishCatalog(pb.PublishCatalogRequest(bundle=bundle), metadata=ADMIN)
    await stub.AddCredential(
        pb.AddCredentialRequest(
            name="win-helpdesk",
            kind=pb.CREDENTIAL_KIND_WINRM_PASSWORD,
            user=USER,
            hosts=["127.0.0.1"],
            secret=PASSWORD,
        ),
        metadata=ADMIN,
    )
    address = f"127.0.0.1:{winrs.port}"
    allowed = pb.SetWinRMHostRequest(
        address=address, http=True, auth="basic", allow_basic=True, allow_unencrypted=True
    )
    await stub.SetWinRMHost(allowed, metadata=BOB)
    target = f"{USER}@{address}"
    diagnosed = await stub.RunAgentlessDiagnostics(
        pb.RunAgentlessDiagnosticsRequest(transport=pb.REMOTE_TRANSPORT_WINRM, address=target),
        metadata=BOB,
    )
    return diagnosed.command.agent_id, target


async def test_a_finding_is_fixed_over_winrm_and_verified(
    console: Console, winrs: WinRSEndpoint, printer: Printer
) -> None:
    machine, target = await _machine(console, winrs)
    plan = await console.stub.FixFinding(
        pb.FixFindingRequest(
            agent=machine, finding="print.stuck_jobs", winrm=target, plan_only=True
        ),
        metadata=BOB,
    )
    assert plan.script_id == "restart-print-spooler"
    assert not plan.HasField("run")
    assert printer.bound == []  # a plan runs nothing
    fixed = await console.stub.FixFinding(
        pb.FixFindingRequest(
            agent=machine,
            finding="print.stuck_jobs",
            parameters={"clear_jobs": "true"},
            winrm=target,
            credential="win-helpdesk",
        ),
        metadata=BOB,
    )
    assert fixed.run.reached_by == f"winrm://{target}"
    assert fixed.run.credential == "win-helpdesk"
    await console.services.agentless_runs.wait_started()
    shown = await console.stub.GetRun(pb.GetRunRequest(id=fixed.run.command.id), metadata=BOB)
    run = shown.run
    assert run.command.state == pb.COMMAND_STATE_SUCCEEDED, run.command.reason
    assert run.stdout == b"Spooler restarted\n"
    assert run.finding == "print.stuck_jobs"
    assert run.verification.state == pb.VERIFICATION_STATE_CLEARED, run.verification.reason
    assert printer.bound == [{"ClearJobs": True, "DryRun": False}]
    listed = await console.stub.ListRuns(pb.ListRunsRequest(agent=machine), metadata=BOB)
    assert [r.reached_by for r in listed.runs] == [f"winrm://{target}"]


async def test_how_to_reach_it_is_checked_before_anything_runs(
    console: Console, winrs: WinRSEndpoint, printer: Printer
) -> None:
    machine, target = await _machine(console, winrs)
    asked = [
        (pb.RunScriptRequest(script_id="restart-print-spooler", ssh=target, winrm=target),
         "not both"),
        (pb.RunScriptRequest(script_id="restart-print-spooler", credential="win-helpdesk"),
         "give --ssh or --winrm too"),
        (pb.RunScriptRequest(script_id="restart-print-spooler", winrm="no-at-sign"),
         "USER@HOST"),
    ]  # fmt: skip
    for request, said in asked:
        request.agent = machine
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await console.stub.RunScript(request, metadata=BOB)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert said in (refused.value.details() or "")
    assert printer.bound == []


async def test_a_run_or_fix_without_how_to_reach_it_is_refused_and_nothing_is_queued(
    console: Console, winrs: WinRSEndpoint, printer: Printer
) -> None:
    """The machine has no agent: a run or a fix without --winrm would wait for an agent that
    never comes; refused in the run's transaction naming the flag and the address."""
    machine, target = await _machine(console, winrs)
    address = target.split("@", 1)[1]
    for ask in (
        lambda: console.stub.RunScript(
            pb.RunScriptRequest(agent=machine, script_id="restart-print-spooler"), metadata=BOB
        ),
        lambda: console.stub.FixFinding(
            pb.FixFindingRequest(agent=machine, finding="print.stuck_jobs"), metadata=BOB
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ask()
        said = refused.value.details() or ""
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, said
        assert f"has no agent: the server reaches it over winrm at {address}" in said
        assert f"--winrm USER@{address}" in said
    listed = await console.stub.ListRuns(pb.ListRunsRequest(agent=machine), metadata=BOB)
    assert list(listed.runs) == []
    assert printer.bound == []
