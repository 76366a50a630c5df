"""The `sonde` command behind each console RPC, so that a refusal names what the technician typed.

The server words its refusals for any API client ("RunDiagnostics needs the diagnostics.run
permission ..."); the CLI shows "`sonde diag` needs ..." instead.
"""

from __future__ import annotations

import re

COMMAND_OF_RPC = {
    "WhoAmI": "sonde whoami",
    "ListAgents": "sonde agents",
    "GetAgent": "sonde agent show",
    "RevokeAgent": "sonde agents revoke",
    "RemoveAgent": "sonde agents remove",
    "RunDiagnostics": "sonde diag",
    "GetSnapshot": "sonde snapshot show",
    "ListCommands": "sonde commands",
    "GetCommand": "sonde commands show",
    "CancelCommand": "sonde commands cancel",
    "OpenTicket": "sonde ticket open",
    "ListTickets": "sonde ticket list",
    "GetTicket": "sonde ticket show",
    "CommentTicket": "sonde ticket comment",
    "AssignTicket": "sonde ticket assign",
    "EscalateTicket": "sonde ticket escalate",
    "ResolveTicket": "sonde ticket resolve",
    "CloseTicket": "sonde ticket close",
    "ReopenTicket": "sonde ticket reopen",
    "WaitTicket": "sonde ticket wait",
    "ResumeTicket": "sonde ticket resume",
    "SetTicketDetails": "sonde ticket set",
    "ListQueue": "sonde queue",
    "TakeTicket": "sonde ticket take",
    "HandBackTicket": "sonde ticket hand-back",
    "LogTicketTime": "sonde ticket time",
    "ListCategories": "sonde category list",
    "AddCategory": "sonde category add",
    "RetireCategory": "sonde category retire",
    "SaveProcedure": "sonde kb add",
    "GetProcedure": "sonde kb show",
    "ListProcedures": "sonde kb search",
    "SuggestProcedures": "sonde kb suggest",
    "ReportInterventions": "sonde report interventions",
    "SetSlaCalendar": "sonde sla calendar set",
    "ListSlaCalendars": "sonde sla calendar list",
    "SetSlaPolicy": "sonde sla policy set",
    "RetireSlaPolicy": "sonde sla policy retire",
    "ListSlaPolicies": "sonde sla policy list",
    "ReportSla": "sonde sla report",
    "SetUserEmail": "sonde users email",
    "CreateUser": "sonde users add",
    "ListUsers": "sonde users list",
    "DisableUser": "sonde users disable",
    "EnableUser": "sonde users enable",
    "SetUserRole": "sonde users role",
    "RotateUserToken": "sonde users rotate",
    "Logout": "sonde logout",
    "CreateEnrollmentToken": "sonde token create",
    "ListEnrollmentTokens": "sonde tokens list",
    "RevokeEnrollmentToken": "sonde tokens revoke",
    "ListAudit": "sonde audit",
    "PublishCatalog": "sonde catalog publish",
    "ListScripts": "sonde scripts",
    "GetScript": "sonde scripts show",
    "RunScript": "sonde run",
    "FixFinding": "sonde fix",
    "GetScriptStats": "sonde scripts stats",
    "ProposeScripts": "sonde scripts propose",
    "ListProposals": "sonde scripts proposals",
    "GetProposal": "sonde scripts review",
    "ReviewProposal": "sonde scripts review",
    "WithdrawProposal": "sonde scripts withdraw",
    "ExportApproved": "sonde scripts export-approved",
    "ListRuns": "sonde runs",
    "GetRun": "sonde runs show",
    "CancelRun": "sonde runs cancel",
    "ApproveRun": "sonde approve",
    "RejectRun": "sonde reject",
    "AddCredential": "sonde credentials add",
    "ListCredentials": "sonde credentials list",
    "RemoveCredential": "sonde credentials remove",
    "TrustHost": "sonde hosts trust",
    "ListHosts": "sonde hosts list",
    "ForgetHost": "sonde hosts forget",
    "RunAgentlessDiagnostics": "sonde diag",
    "SetWinRMHost": "sonde hosts winrm",
    "StartDeployment": "sonde deploy",
    "GetDeployment": "sonde deploy",
}

_RPC_NAME = re.compile(r"\b(" + "|".join(COMMAND_OF_RPC) + r")\b")


def with_command_names(message: str) -> str:
    """`message` with each console RPC name replaced by its `sonde` command, in backquotes."""
    return _RPC_NAME.sub(lambda match: f"`{COMMAND_OF_RPC[match.group(1)]}`", message)
