"""A WinRS (WS-Management shell) endpoint on 127.0.0.1 for tests: real HTTP or HTTPS, the
messages of WINDOWS.md section 2.2, and recorded PowerShell outputs behind it.

It answers Create, Command, Send, Receive (Running, then Done with the exit code), Signal and
Delete, echoes each request's MessageID in RelatesTo, answers faults as HTTP 500 with a SOAP
Fault (the OperationTimeout fault, code 2150858793, when a reply asks for it), and 401 with
`WWW-Authenticate: Basic realm="WSMAN"` on wrong or missing credentials. A command is given
to the first handler a test registered whose predicate takes it; `powershell
-EncodedCommand` is decoded first, so a handler sees the script text and the stdin the
client streamed with Send. It cannot stand in for NTLM, Kerberos, CredSSP, message
encryption, real cmd.exe or PowerShell, CLIXML or PSRP (docs/agentless.md, WinRM).
"""

from __future__ import annotations

import base64
import re
import ssl
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from xml.sax.saxutils import escape

S = "http://www.w3.org/2003/05/soap-envelope"
A = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
W = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
RSP = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
X = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
F = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
OPERATION_TIMEOUT_CODE = 2150858793
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
OUTPUT_PER_RECEIVE = 48 * 1024  # what one Receive answers at most, so big outputs take several
ENCODED = re.compile(r"(?i)^powershell(?:\.exe)?\b.*-EncodedCommand\s+([A-Za-z0-9+/=]+)\s*$")


@dataclass
class WinRSCommand:
    """One command as the endpoint received it."""

    command: str  # rsp:Command, as sent
    arguments: list[str]
    script: str | None  # the -EncodedCommand script, decoded (UTF-16LE)
    environment: dict[str, str]  # the shell's rsp:Environment
    codepage: str  # WINRS_CODEPAGE of the shell
    stdin: bytes = b""
    stdin_sends: int = 0  # how many Send messages carried it
    stdin_ended: bool = False


@dataclass
class WinRSReply:
    """What a handler answers: the recorded output, and how the endpoint delivers it."""

    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0
    timeouts: int = 0  # Receives answered with the OperationTimeout fault before any output
    running: int = 0  # Receives answered Running with no output before the output


Handler = Callable[[WinRSCommand], WinRSReply]
Predicate = Callable[[WinRSCommand], bool]


@dataclass
class _Running:
    command: WinRSCommand
    reply: WinRSReply | None = None
    sent: int = 0  # stdout bytes already answered
    timeouts_left: int = 0
    running_left: int = 0


@dataclass
class _Shell:
    environment: dict[str, str]
    codepage: str
    commands: dict[str, _Running] = field(default_factory=dict)


class WinRSEndpoint:
    """Start with `with WinRSEndpoint(user, password) as endpoint:`; `endpoint.port`."""

    def __init__(self, user: str, password: str, *, tls: ssl.SSLContext | None = None) -> None:
        self.user, self.password, self.tls = user, password, tls
        self.handlers: list[tuple[Predicate, Handler]] = []
        self.actions: list[str] = []  # every request's action, short ("Create", "Receive")
        self.finished: list[WinRSCommand] = []  # commands whose output was answered whole
        self.refused_logins = 0
        self.shells: dict[str, _Shell] = {}
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def on(self, predicate: Predicate, handler: Handler) -> None:
        self.handlers.append((predicate, handler))

    def on_script(self, script: str, handler: Handler) -> None:
        """handler for `powershell -EncodedCommand` of exactly this script text."""
        self.on(lambda command: command.script == script, handler)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> WinRSEndpoint:
        endpoint = self

        class Handler(_RequestHandler):
            owner = endpoint

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="winrs", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> WinRSEndpoint:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    # What the requests do, under the lock (one client may pipeline on several threads).

    def answer(self, action: str, root: ET.Element) -> tuple[int, str]:
        short = action.rsplit("/", 1)[-1]
        with self.lock:
            self.actions.append(short)
            if action == TRANSFER + "Create":
                return 200, self._create(root)
            shell_id = _selector(root)
            shell = self.shells.get(shell_id)
            if shell is None:
                return 500, _fault("s:Sender", "w:InvalidSelectors", f"no shell {shell_id}", 1)
            if action == SHELL + "Command":
                return 200, self._command(shell, root)
            if action == SHELL + "Send":
                return self._send(shell, root)
            if action == SHELL + "Receive":
                return self._receive(shell, root)
            if action == SHELL + "Signal":
                signal = root.find(f".//{{{RSP}}}Signal")
                shell.commands.pop(signal.get("CommandId", "") if signal is not None else "", None)
                return 200, f"<rsp:SignalResponse xmlns:rsp='{RSP}'/>"
            if action == TRANSFER + "Delete":
                del self.shells[shell_id]
                return 200, ""
        return 500, _fault("s:Sender", "a:ActionNotSupported", f"{action} is not supported", 1)

    def _create(self, root: ET.Element) -> str:
        shell_id = str(uuid.uuid4()).upper()
        variables = root.findall(f".//{{{RSP}}}Environment/{{{RSP}}}Variable")
        options = {o.get("Name"): o.text or "" for o in root.iter(f"{{{W}}}Option")}
        self.shells[shell_id] = _Shell(
            environment={v.get("Name", ""): v.text or "" for v in variables},
            codepage=options.get("WINRS_CODEPAGE", "437"),
        )
        return (
            f"<x:ResourceCreated xmlns:x='{X}' xmlns:a='{A}' xmlns:w='{W}'>"
            "<a:Address>http://127.0.0.1/wsman</a:Address><a:ReferenceParameters>"
            f"<w:ResourceURI>{SHELL}cmd</w:ResourceURI><w:SelectorSet>"
            f"<w:Selector Name='ShellId'>{shell_id}</w:Selector></w:SelectorSet>"
            "</a:ReferenceParameters></x:ResourceCreated>"
            f"<rsp:Shell xmlns:rsp='{RSP}'><rsp:ShellId>{shell_id}</rsp:ShellId>"
            "<rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut></rsp:Shell>"
        )

    def _command(self, shell: _Shell, root: ET.Element) -> str:
        text = (root.findtext(f".//{{{RSP}}}Command") or "").strip()
        arguments = [a.text or "" for a in root.iter(f"{{{RSP}}}Arguments")]
        match = ENCODED.match(text)
        script = base64.b64decode(match.group(1)).decode("utf-16-le") if match else None
        command = WinRSCommand(text, arguments, script, dict(shell.environment), shell.codepage)
        command_id = str(uuid.uuid4()).upper()
        shell.commands[command_id] = _Running(command)
        return (
            f"<rsp:CommandResponse xmlns:rsp='{RSP}'>"
            f"<rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
        )

    def _send(self, shell: _Shell, root: ET.Element) -> tuple[int, str]:
        stream = root.find(f".//{{{RSP}}}Send/{{{RSP}}}Stream")
        running = shell.commands.get(stream.get("CommandId", "") if stream is not None else "")
        if stream is None or running is None or running.command.stdin_ended:
            return 500, _fault("s:Sender", "w:InvalidParameter", "no command takes this stdin", 2)
        running.command.stdin += base64.b64decode(stream.text or "")
        running.command.stdin_sends += 1
        running.command.stdin_ended = stream.get("End", "false").lower() == "true"
        return 200, f"<rsp:SendResponse xmlns:rsp='{RSP}'/>"

    def _receive(self, shell: _Shell, root: ET.Element) -> tuple[int, str]:
        desired = root.find(f".//{{{RSP}}}DesiredStream")
        command_id = desired.get("CommandId", "") if desired is not None else ""
        running = shell.commands.get(command_id)
        if running is None:
            return 500, _fault("s:Sender", "w:InvalidParameter", f"no command {command_id}", 3)
        started = running.command.stdin_sends == 0 or running.command.stdin_ended
        if running.reply is None and started:
            running.reply = self._dispatch(running.command)
            running.timeouts_left = running.reply.timeouts
            running.running_left = running.reply.running
        if running.reply is None or running.running_left > 0:
            running.running_left -= 1
            return 200, _receive_body(command_id, b"", b"", None)
        if running.timeouts_left > 0:
            running.timeouts_left -= 1
            reason = "The WS-Management service cannot complete the operation within the time "
            reason += "specified in OperationTimeout."
            return 500, _fault("s:Receiver", "w:TimedOut", reason, OPERATION_TIMEOUT_CODE)
        reply = running.reply
        chunk = reply.stdout[running.sent : running.sent + OUTPUT_PER_RECEIVE]
        running.sent += len(chunk)
        if running.sent < len(reply.stdout):
            return 200, _receive_body(command_id, chunk, b"", None)
        self.finished.append(running.command)
        return 200, _receive_body(command_id, chunk, reply.stderr, reply.exit_code)

    def _dispatch(self, command: WinRSCommand) -> WinRSReply:
        for predicate, handler in self.handlers:
            if predicate(command):
                return handler(command)
        program = command.command.split(" ", 1)[0]
        message = f"'{program}' is not recognized as an internal or external command,\r\n"
        return WinRSReply(stderr=message.encode(), exit_code=9009)


class _RequestHandler(BaseHTTPRequestHandler):
    owner: WinRSEndpoint
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet in tests
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not self._authorized():
            with self.owner.lock:
                self.owner.refused_logins += 1
            self._reply(401, b"", {"WWW-Authenticate": 'Basic realm="WSMAN"'})
            return
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            self._reply(400, b"not XML")
            return
        message_id = root.findtext(f".//{{{A}}}MessageID") or ""
        action = root.findtext(f".//{{{A}}}Action") or ""
        status, inner = self.owner.answer(action, root)
        answered = action + "Response" if status == 200 else FAULT_ACTION
        self._reply(status, _envelope(answered, message_id, inner).encode())

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (user, password) == (self.owner.user, self.owner.password)

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _selector(root: ET.Element) -> str:
    for selector in root.iter(f"{{{W}}}Selector"):
        if selector.get("Name") == "ShellId":
            return selector.text or ""
    return ""


def _envelope(action: str, relates_to: str, body: str) -> str:
    return (
        f"<s:Envelope xml:lang='en-US' xmlns:s='{S}' xmlns:a='{A}' xmlns:w='{W}' "
        f"xmlns:rsp='{RSP}' xmlns:x='{X}'><s:Header><a:Action>{action}</a:Action>"
        f"<a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
        f"<a:To>{A}/role/anonymous</a:To><a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )


def _receive_body(command_id: str, stdout: bytes, stderr: bytes, exit_code: int | None) -> str:
    streams = ""
    for name, data in (("stdout", stdout), ("stderr", stderr)):
        if data:
            encoded = base64.b64encode(data).decode("ascii")
            streams += f"<rsp:Stream Name='{name}' CommandId='{command_id}'>{encoded}</rsp:Stream>"
    if exit_code is None:
        state = f"<rsp:CommandState CommandId='{command_id}' State='{SHELL}CommandState/Running'/>"
    else:
        streams += f"<rsp:Stream Name='stdout' CommandId='{command_id}' End='true'/>"
        streams += f"<rsp:Stream Name='stderr' CommandId='{command_id}' End='true'/>"
        state = (
            f"<rsp:CommandState CommandId='{command_id}' State='{SHELL}CommandState/Done'>"
            f"<rsp:ExitCode>{exit_code}</rsp:ExitCode></rsp:CommandState>"
        )
    return f"<rsp:ReceiveResponse xmlns:rsp='{RSP}'>{streams}{state}</rsp:ReceiveResponse>"


def _fault(code: str, subcode: str, reason: str, wsman_code: int) -> str:
    return (
        f"<s:Fault xmlns:s='{S}' xmlns:w='{W}' xmlns:f='{F}'><s:Code><s:Value>{code}</s:Value>"
        f"<s:Subcode><s:Value>{subcode}</s:Value></s:Subcode></s:Code><s:Reason>"
        f"<s:Text xml:lang='en-US'>{escape(reason)}</s:Text></s:Reason><s:Detail>"
        f"<f:WSManFault Code='{wsman_code}' Machine='127.0.0.1'><f:Message>{escape(reason)}"
        "</f:Message></f:WSManFault></s:Detail></s:Fault>"
    )
