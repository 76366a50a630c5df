"""The server's tables (SQLAlchemy Core). Migrations create them; domain code queries them.

Names of users are stored as text (users are never renamed), enums as short lowercase words so
that the database reads on its own, and snapshot payloads as serialized sonde.v1.Snapshot bytes
with the columns queries need extracted beside them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

from sonde.server.storage.types import IdColumnType, UtcDateTime

# Stable constraint names, so later migrations can refer to them on both engines.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

agents = Table(
    "agents",
    metadata,
    Column("id", String(26), primary_key=True),
    Column("hostname", String(255), nullable=False),
    Column("hostname_key", String(255), nullable=False),  # lower-cased, for lookups
    Column("platform", String(32), nullable=False),
    Column("os_name", String(255), nullable=False, default=""),
    Column("os_version", String(255), nullable=False, default=""),
    Column("agent_version", String(64), nullable=False, default=""),
    Column("cert_fingerprint", String(128), nullable=False),
    Column("enrolled_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime()),
    Column("connected", Boolean(), nullable=False, default=False),
    Column("online_since", UtcDateTime()),
    Column("remote_address", String(255), nullable=False, default=""),
    # Who holds the agent's stream: (replica, session, online_since); NULL when offline.
    Column("session_replica", String(36)),
    Column("session_id", String(36)),
    Column("revoked_at", UtcDateTime()),
    Column("revoke_reason", Text(), nullable=False, default=""),
    Column("cpu_percent", Float(), nullable=False, default=0.0),
    Column("memory_percent", Float(), nullable=False, default=0.0),
    Column("system_disk_percent", Float(), nullable=False, default=0.0),
    # Set: retired by `sonde agents remove` (revoked too); kept for its tickets and history.
    Column("removed_at", UtcDateTime()),
    Column("removed_by", String(64), nullable=False, default=""),
    # The enrollment token its key was last enrolled with (NULL: enrolled before 0007).
    Column("enrolled_with_token", String(16)),
    # A machine without an agent, reached by the server (server/domain/agentless.py): "ssh"
    # or "winrm", and the host:port it is reached at; both "" for an enrolled agent.
    Column("reached_by", String(8), nullable=False, server_default=""),
    Column("reach_address", String(255), nullable=False, server_default=""),
    Index(None, "hostname_key"),
)

enrollment_tokens = Table(
    "enrollment_tokens",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("secret_sha256", LargeBinary(32), nullable=False),
    Column("uses_granted", Integer(), nullable=False),
    Column("uses_left", Integer(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime()),  # set: refused at enrollment from then on
    Column("revoked_by", String(64), nullable=False, default=""),
)

users = Table(
    "users",
    metadata,
    Column("id", IdColumnType, primary_key=True, autoincrement=True),
    Column("name", String(32), nullable=False, unique=True),
    Column("role", String(8), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("disabled_at", UtcDateTime()),  # set: every token of the user is refused
    Column("email", String(254)),  # told of assignments and SLA risk (docs/sla.md)
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("user_id", IdColumnType, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("secret_sha256", LargeBinary(32), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime()),
    Column("expires_at", UtcDateTime()),  # none: it does not expire
    Index(None, "user_id"),
)

# The admin's tree of request categories: a path of slugs, "printing/spooler".
ticket_categories = Table(
    "ticket_categories",
    metadata,
    Column("path", String(120), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("retired_at", UtcDateTime()),  # kept for the tickets that name it; offered no more
)

# SLA on business hours (docs/sla.md): an admin's calendars (calendar_form as JSON) and the
# policies per contract and priority; a policy is retired, never deleted (tickets name it).
business_calendars = Table(
    "business_calendars",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("definition", Text(), nullable=False),
    Column("updated_by", String(64), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

sla_policies = Table(
    "sla_policies",
    metadata,
    Column("id", IdColumnType, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("contract", String(64), nullable=False, server_default=""),
    Column("priority", String(2), nullable=False),
    Column("response_within_s", Integer(), nullable=False),
    Column("resolve_within_s", Integer(), nullable=False),
    Column("calendar", String(64), ForeignKey("business_calendars.name"), nullable=False),
    Column("at_risk_share", Float(), nullable=False),
    Column("on_risk", String(16), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("retired_at", UtcDateTime()),
    Index(
        "ux_sla_policies_live_name",
        "name",
        unique=True,
        sqlite_where=text("retired_at IS NULL"),
        postgresql_where=text("retired_at IS NULL"),
    ),
    Index(
        "ux_sla_policies_live_contract_priority",
        "contract",
        "priority",
        unique=True,
        sqlite_where=text("retired_at IS NULL"),
        postgresql_where=text("retired_at IS NULL"),
    ),
)

tickets = Table(
    "tickets",
    metadata,
    Column("id", IdColumnType, primary_key=True, autoincrement=True),
    Column("title", String(200), nullable=False),
    Column("description", Text(), nullable=False, default=""),
    Column("channel", String(16), nullable=False),
    Column("requester", String(200), nullable=False, default=""),
    Column("priority", String(2), nullable=False),
    Column("level", String(2), nullable=False),
    Column("status", String(16), nullable=False),
    Column("assignee", String(32), ForeignKey("users.name")),
    Column("agent_id", String(26), ForeignKey("agents.id")),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("response_due_at", UtcDateTime(), nullable=False),
    Column("resolve_due_at", UtcDateTime(), nullable=False),
    Column("first_response_at", UtcDateTime()),
    Column("resolution", Text(), nullable=False, default=""),
    Column("resolved_at", UtcDateTime()),
    Column("closed_at", UtcDateTime()),
    # What kind of request it is, and its place in the admin's category tree (docs/tickets.md).
    Column("kind", String(16), nullable=False, server_default="incident"),
    Column("category", String(120), ForeignKey("ticket_categories.path")),
    Column("category_confirmed_by", String(64)),  # the L2 who confirmed or corrected it
    # Closure quality: how it was resolved and the time the helpdesk spent on it.
    Column("outcome", String(24), nullable=False, server_default=""),
    Column("time_spent_s", Integer(), nullable=False, server_default="0"),
    # SLA: the customer group whose policy applies ("" the default) and the policy the due
    # times came from (none: the wall-clock targets of sla.py); when each clock turns at risk.
    Column("contract", String(64), nullable=False, server_default=""),
    Column("sla_policy_id", IdColumnType, ForeignKey("sla_policies.id")),
    Column("response_risk_at", UtcDateTime()),
    Column("resolve_risk_at", UtcDateTime()),
    Index(None, "status", "priority"),
    Index(None, "assignee"),
    Index(None, "agent_id"),
)

commands = Table(
    "commands",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("agent_id", String(26), ForeignKey("agents.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("ticket_id", IdColumnType, ForeignKey("tickets.id")),
    Column("requested_by", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    # server/domain/commands.py: queued, delivered, running, then one final state.
    Column("state", String(16), nullable=False),
    Column("delivered_at", UtcDateTime()),
    Column("started_at", UtcDateTime()),
    Column("finished_at", UtcDateTime()),
    Column("failure_reason", Text(), nullable=False, default=""),
    Column("cancelled_by", String(64), nullable=False, default=""),
    Column("deliveries", Integer(), nullable=False, default=0),
    Column("delivered_session", String(36), nullable=False, default=""),
    # A diagnostic's collectors, comma-separated; "": all of them (a run's verification
    # collects only what its checks read).
    Column("collectors", String(200), nullable=False, server_default=""),
    Index(None, "agent_id", "state", "created_at"),
    Index(None, "state", "expires_at"),
)

# One row per server process sharing the database; a lapsed lease means a dead replica.
replicas = Table(
    "replicas",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer(), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("lease_expires_at", UtcDateTime(), nullable=False),
    Column("agent_address", String(255), nullable=False, default=""),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", IdColumnType, primary_key=True, autoincrement=True),
    Column("agent_id", String(26), ForeignKey("agents.id"), nullable=False),
    Column("command_id", String(64), ForeignKey("commands.id"), unique=True),
    Column("collected_at", UtcDateTime(), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("worst_severity", Integer(), nullable=False),
    Column("finding_count", Integer(), nullable=False),
    Column("ticket_id", IdColumnType, ForeignKey("tickets.id")),
    Column("requested_by", String(64), nullable=False),
    Column("payload", LargeBinary(), nullable=False),
    Index(None, "agent_id", "received_at"),
    Index(None, "ticket_id"),
)

findings = Table(
    "findings",
    metadata,
    Column("id", IdColumnType, primary_key=True, autoincrement=True),
    Column(
        "snapshot_id",
        IdColumnType,
        ForeignKey("snapshots.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("position", Integer(), nullable=False),
    Column("check_id", String(64), nullable=False),
    Column("severity", Integer(), nullable=False),
    Column("summary", Text(), nullable=False),
    Column("fix_script_id", String(64), nullable=False, default=""),
    Column("payload", LargeBinary(), nullable=False),  # serialized sonde.v1.Finding
    Index(None, "snapshot_id", "position"),
    Index(None, "check_id", "severity"),
)

ticket_events = Table(
    "ticket_events",
    metadata,
    Column("id", IdColumnType, primary_key=True, autoincrement=True),
    Column(
        "ticket_id",
        IdColumnType,
        ForeignKey("tickets.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("kind", String(16), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("body", Text(), nullable=False, default=""),
    Column("snapshot_id", IdColumnType, ForeignKey("snapshots.id")),
    Column("from_status", String(16)),
    Column("to_status", String(16)),
    Column("assignee", String(32)),
    Column("command_id", String(64)),  # for a script run's events
    # PostgreSQL: the writing transaction's id (migration 0024's default); 0 on SQLite. For
    # the outbound webhooks' feed, to read in (xact_id, id) order (server/webhooks/feed.py).
    Column("xact_id", BigInteger(), nullable=False, server_default="0"),
    Index(None, "ticket_id", "id"),
    Index("ix_ticket_events_xact_id_id", "xact_id", "id"),
)

# Mail intake (server/domain/mail_tickets.py): every mail taken, once, by its Message-ID.
# What the SLA watch acted on: one row per ticket, clock and state, so that a clock turning
# at risk is acted on once however many replicas watch.
sla_alerts = Table(
    "sla_alerts",
    metadata,
    Column("ticket_id", IdColumnType, ForeignKey("tickets.id"), primary_key=True),
    Column("clock", String(8), primary_key=True),  # response | resolve
    Column("state", String(8), primary_key=True),  # at_risk | breached
    Column("noted_at", UtcDateTime(), nullable=False),
    Column("acted", String(16), nullable=False),  # notified | escalated | noted
)

mail_intake = Table(
    "mail_intake",
    metadata,
    Column("id", IdColumnType, primary_key=True, autoincrement=True),
    Column("message_id", String(255), nullable=False, unique=True),
    Column("mailbox", String(300), nullable=False),  # user@host:port/folder
    Column("uidvalidity", BigInteger(), nullable=False),
    Column("uid", BigInteger(), nullable=False),
    Column("ticket_id", IdColumnType, ForeignKey("tickets.id"), nullable=False),
    Column("action", String(16), nullable=False),  # opened, commented
    Column("sender", String(320), nullable=False),
    Column("taken_at", UtcDateTime(), nullable=False),
    Column("warnings", Text(), nullable=False, server_default=""),  # what was cut or refused
)

# Where the reading of each mailbox got to: the UIDs above last_uid are still to be read.
mailbox_state = Table(
    "mailbox_state",
    metadata,
    Column("mailbox", String(300), primary_key=True),
    Column("uidvalidity", BigInteger(), nullable=False),
    Column("last_uid", BigInteger(), nullable=False),
    Column("checked_at", UtcDateTime(), nullable=False),
    Column("last_error", Text(), nullable=False, server_default=""),
)

# Files a requester sent (a mail's attachments): kept up to the caps, else listed as refused.
ticket_attachments = Table(
    "ticket_attachments",
    metadata,
    Column("id", IdColumnType, primary_key=True, autoincrement=True),
    Column("ticket_id", IdColumnType, ForeignKey("tickets.id"), nullable=False, index=True),
    Column("event_id", IdColumnType, ForeignKey("ticket_events.id")),
    Column("name", String(160), nullable=False),
    Column("content_type", String(120), nullable=False),
    Column("size_bytes", BigInteger(), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("content", LargeBinary()),  # None: not kept, `refused` says why
    Column("refused", String(200), nullable=False, server_default=""),
)

# The knowledge base (server/domain/knowledge_base.py): each procedure as the Markdown a team
# keeps in git (server/domain/kb_markdown.py), with what is searched on beside it.
kb_procedures = Table(
    "kb_procedures",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("category", String(120), nullable=False),
    Column("markdown", Text(), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("updated_by", String(64), nullable=False),
)

# Notifications to send (server/domain/notifications.py): written in the transaction of the
# ticket change they tell, sent after it, retried until sent or given up.
outbox = Table(
    "outbox",
    metadata,
    Column("id", IdColumnType, primary_key=True, autoincrement=True),
    Column("kind", String(24), nullable=False),  # opened, resolved, ...
    Column("ticket_id", IdColumnType, ForeignKey("tickets.id"), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("recipient_name", String(200), nullable=False, server_default=""),
    Column("title", String(200), nullable=False),
    Column("body", Text(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("attempts", Integer(), nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime()),
    Column("given_up_at", UtcDateTime()),
    Column("last_error", Text(), nullable=False, server_default=""),
    Index(None, "sent_at", "given_up_at", "next_attempt_at"),
)

# Outbound webhooks (server/webhooks, docs/webhooks.md): each endpoint's sealed secret (and, for a
# while after a rotation, its previous one), its cursor in the ticket events' feed, its retry
# state and the replica that holds its delivery (lease).
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("url", String(2048), nullable=False),
    Column("events", Text(), nullable=False, server_default=""),  # JSON list; [] for all
    Column("ca_pem", Text(), nullable=False, server_default=""),
    Column("sealed_with", String(32), nullable=False),
    Column("nonce", LargeBinary(), nullable=False),
    Column("ciphertext", LargeBinary(), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("cursor_xact", BigInteger(), nullable=False),
    Column("cursor_event", BigInteger(), nullable=False),
    Column("delivered", BigInteger(), nullable=False, server_default="0"),
    Column("failures", Integer(), nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime()),
    Column("last_success_at", UtcDateTime()),
    Column("last_error", Text(), nullable=False, server_default=""),
    Column("last_error_at", UtcDateTime()),
    Column("lease_owner", String(64)),
    Column("lease_until", UtcDateTime()),
    Column("previous_sealed_with", String(32)),
    Column("previous_nonce", LargeBinary()),
    Column("previous_ciphertext", LargeBinary()),
    Column("previous_until", UtcDateTime()),  # it signs beside the current one until then
)

# Hash-chained: no foreign keys, so the log outlives anything it mentions.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", IdColumnType, primary_key=True, autoincrement=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("agent_id", String(26)),
    Column("ticket_id", IdColumnType),
    Column("detail", Text(), nullable=False),
    Column("result", Text(), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# The chain's head, one row (id CHAIN_ROW): the last row's id and hash. An append advances it
# with one UPDATE, whose row lock orders appends across transactions and replicas (on
# PostgreSQL inside the append's own statement: no table lock, no second round trip), and
# whose old values give the new row its id and link.
audit_chain = Table(
    "audit_chain",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=False),
    Column("last_id", IdColumnType, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("keyed_from", IdColumnType),  # the first row linked with the audit key, if any
    Column("key_check", String(64)),  # names that key (audit_rows.AuditKey.check)
)

# The signed script catalog: every version ever published, each kept as signed (its bytes and
# signature), never changed once written. risk, platforms and title are read from the manifest
# for listing; version_order sorts versions (major, minor, patch: 10^12, 10^6, 1).
catalog_scripts = Table(
    "catalog_scripts",
    metadata,
    Column("id", IdColumnType, primary_key=True, autoincrement=True),
    Column("script_id", String(64), nullable=False),
    Column("version", String(20), nullable=False),
    Column("version_order", BigInteger(), nullable=False),
    Column("title", String(120), nullable=False),
    Column("risk", String(8), nullable=False),
    Column("platforms", String(64), nullable=False),  # comma-separated: "linux,macos"
    Column("manifest", LargeBinary(), nullable=False),
    Column("script", LargeBinary(), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("published_at", UtcDateTime(), nullable=False),
    Column("published_by", String(64), nullable=False),
    UniqueConstraint("script_id", "version"),
)

# Proposed scripts and versions (server/domain/script_proposals.py): the bytes as proposed,
# never signed and never sent to an agent. `live_script_id` is the script id while the
# proposal is pending or approved, NULL after: one live proposal per script, even when two
# are proposed at once on two replicas.
script_proposals = Table(
    "script_proposals",
    metadata,
    Column("id", IdColumnType, primary_key=True, autoincrement=True),
    Column("script_id", String(64), nullable=False),
    Column("version", String(20), nullable=False),
    Column("version_order", BigInteger(), nullable=False),
    Column("platform", String(8), nullable=False),
    Column("title", String(120), nullable=False),
    Column("risk", String(8), nullable=False),
    Column("manifest", LargeBinary(), nullable=False),
    Column("script", LargeBinary(), nullable=False),
    Column("note", Text(), nullable=False),
    Column("state", String(12), nullable=False, index=True),
    Column("live_script_id", String(64), unique=True),
    Column("proposed_by", String(64), nullable=False),
    Column("proposed_at", UtcDateTime(), nullable=False),
    Column("reviewed_by", String(64), nullable=False),
    Column("reviewed_at", UtcDateTime()),
    Column("reason", Text(), nullable=False),  # a rejection's or a withdrawal's
    Column("superseded_by", IdColumnType),  # the newer proposal of the same script
    Column("ended_at", UtcDateTime()),  # withdrawn, superseded or published
    Index(None, "script_id", "version"),
)

# What a RunScript command runs and how it ended (server/domain/script_runs.py). `parameters`
# holds the values as given, secrets included, only until the run ends; `parameters_shown`
# is what people see (secrets as ***).
script_runs = Table(
    "script_runs",
    metadata,
    Column("command_id", String(64), ForeignKey("commands.id"), primary_key=True),
    Column("script_id", String(64), nullable=False, index=True),
    Column("script_version", String(20), nullable=False),
    Column("risk", String(8), nullable=False),
    Column("dry_run", Boolean(), nullable=False),
    Column("parameters_shown", Text(), nullable=False),  # JSON object, secrets masked
    Column("parameters", Text(), nullable=False),  # JSON object, as dispatched; "{}" once ended
    Column("approval_due_at", UtcDateTime()),  # a high-risk run not approved by then expires
    Column("approved_by", String(64), nullable=False),
    Column("approved_at", UtcDateTime()),
    Column("rejected_by", String(64), nullable=False),
    Column("exit_code", Integer()),
    Column("timed_out", Boolean(), nullable=False),
    Column("cancelled", Boolean(), nullable=False),
    Column("stdout", LargeBinary(), nullable=False),
    Column("stderr", LargeBinary(), nullable=False),
    Column("stdout_truncated", Boolean(), nullable=False),
    Column("stderr_truncated", Boolean(), nullable=False),
    Column("stdout_bytes", BigInteger(), nullable=False),
    Column("stderr_bytes", BigInteger(), nullable=False),
    Column("duration_ms", BigInteger()),
    Column("live_output", LargeBinary(), nullable=False),  # chunks as they came, bounded
    Column("live_dropped", BigInteger(), nullable=False),  # bytes past the live bound
    # The closed loop (sonde.server.domain.run_verification): the finding the run was asked
    # to fix ("" when it was not asked through one), the agent's newest snapshot when it was
    # asked, and whether the manifest's verify checks, collected again afterwards, cleared.
    Column("finding", String(64), nullable=False, server_default=""),
    Column("resolve_if_cleared", Boolean(), nullable=False, server_default=false()),
    Column("snapshot_before_id", IdColumnType),
    Column("verification", String(16), nullable=False, server_default="", index=True),
    Column("verify_command_id", String(64), index=True),  # the diagnostic that checks it
    Column("verified_at", UtcDateTime()),
    Column("verification_detail", Text(), nullable=False, server_default=""),  # JSON list
    # Where a user_session script ran, as the agent said and made inert: "CONTOSO\\alice's
    # console session 1 (screen locked)"; "" for any other run.
    Column("user_session", String(200), nullable=False, server_default=""),
)

# A script run on a machine without an agent (server/domain/agentless_runs.py): how the server
# reaches it (the credential's name, never its secret) and the replica that claimed it to run
# it, in the transaction that moved it to delivered, before any login.
agentless_runs = Table(
    "agentless_runs",
    metadata,
    Column("command_id", String(64), ForeignKey("commands.id"), primary_key=True),
    Column("transport", String(8), nullable=False),  # ssh, winrm
    Column("login", String(255), nullable=False),  # the user it logs in as
    Column("host", String(255), nullable=False),
    Column("port", Integer(), nullable=False),
    Column("credential_name", String(64), nullable=False),  # "": the store's best match
    Column("claimed_by", String(36), index=True),  # a replica's id; NULL until claimed
    Column("claimed_at", UtcDateTime()),
)

# Credentials for agentless reach (server/domain/remote_credentials.py): the secret is sealed
# with pki/credentials.key (AES-256-GCM, bound to id, name, kind, user and hosts), never
# stored in the clear.
remote_credentials = Table(
    "remote_credentials",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("kind", String(20), nullable=False),
    Column("user_name", String(128), nullable=False),
    Column("hosts", Text(), nullable=False),  # JSON list of host patterns
    Column("note", Text(), nullable=False),
    Column("key_fingerprint", String(80), nullable=False),  # "" unless a private key
    Column("sealed_with", String(16), nullable=False),  # the credentials key's id
    Column("nonce", LargeBinary(), nullable=False),
    Column("ciphertext", LargeBinary(), nullable=False),
    Column("added_by", String(64), nullable=False),
    Column("added_at", UtcDateTime(), nullable=False),
)

# SSH host keys the server trusts (server/domain/trusted_hosts.py): each confirmed by a
# technician against the fingerprint the machine shows out of band; never added on first use.
trusted_host_keys = Table(
    "trusted_host_keys",
    metadata,
    Column("id", IdColumnType, primary_key=True, autoincrement=True),
    Column("host", String(255), nullable=False),  # lower-cased name or address
    Column("port", Integer(), nullable=False),
    Column("key_type", String(40), nullable=False),  # ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa
    Column("key_base64", Text(), nullable=False),
    Column("fingerprint", String(80), nullable=False),  # SHA256:...
    Column("trusted_by", String(64), nullable=False),
    Column("trusted_at", UtcDateTime(), nullable=False),
    UniqueConstraint("host", "port", "key_type"),
)

# How the server talks WinRM to a host (server/domain/winrm_hosts.py); a host without a row
# gets the safe defaults (HTTPS 5986, NTLM, the certificate checked).
winrm_hosts = Table(
    "winrm_hosts",
    metadata,
    Column("host", String(255), primary_key=True),  # lower-cased name or address
    Column("port", Integer(), primary_key=True, autoincrement=False),
    Column("https", Boolean(), nullable=False),
    Column("auth", String(16), nullable=False),  # ntlm, kerberos, basic
    Column("ca_file", String(4096), nullable=False),  # a path on the server; "" for none
    Column("allow_basic", Boolean(), nullable=False),
    Column("allow_unencrypted", Boolean(), nullable=False),
    Column("operation_timeout_s", Integer(), nullable=False),
    Column("set_by", String(64), nullable=False),
    Column("set_at", UtcDateTime(), nullable=False),
)

# Push installs (server/domain/deployments.py, docs/deploy.md): one row per `sonde deploy`,
# with what it installs and where; one row per host, updated as the host goes through its
# stages, so that a crash leaves each host's row saying where it got to.
deployments = Table(
    "deployments",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("requested_by", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("agent_version", String(64), nullable=False),  # the wheelhouse's sonde-helpdesk
    Column("options", Text(), nullable=False),  # JSON: prefix, state and unit folders, limits
    Column("retry_of", String(16)),  # the deployment whose hosts `--retry` took
)

deployment_hosts = Table(
    "deployment_hosts",
    metadata,
    Column("deployment_id", String(16), ForeignKey("deployments.id"), primary_key=True),
    Column("position", Integer(), primary_key=True, autoincrement=False),  # order given
    Column("transport", String(8), nullable=False),  # ssh, winrm
    Column("login", String(255), nullable=False),
    Column("host", String(255), nullable=False),
    Column("port", Integer(), nullable=False),
    Column("credential_name", String(64), nullable=False),
    Column("stage", String(16), nullable=False),  # planned, preflight, install, enroll, ...
    Column("result", String(16), nullable=False),  # pending, running, succeeded, failed, skipped
    Column("failed_check", String(32), nullable=False, server_default=""),
    Column("reason", Text(), nullable=False, server_default=""),
    Column("found_version", String(64), nullable=False, server_default=""),  # before
    Column("agent_id", String(26)),  # once enrolled
    Column("token_id", String(16)),  # the one-time enrollment token issued for it
    Column("updated_at", UtcDateTime(), nullable=False),
    # Windows: how the MSI got there, fetched (HTTPS from the server) or streamed (WinRM).
    Column("msi_delivery", String(8), nullable=False, server_default=""),
    Index(None, "host", "port", "transport"),
)

# The self-service web form (server/web/, docs/web.md): each submission's one-time id, so a
# form sent twice (a reload, a double click) opens one ticket.
web_submissions = Table(
    "web_submissions",
    metadata,
    Column("submission_id", String(64), primary_key=True),
    Column("ticket_id", IdColumnType, ForeignKey("tickets.id"), nullable=False),
    Column("peer", String(64), nullable=False, server_default=""),
    Column("submitted_at", UtcDateTime(), nullable=False),
)

# The rating asked of a ticket's requester on resolve (server/domain/satisfaction.py): the link's
# secret is stored as its SHA-256 only; rating 1 to 5, NULL until answered.
satisfaction = Table(
    "satisfaction",
    metadata,
    Column("id", IdColumnType, primary_key=True, autoincrement=True),
    Column("ticket_id", IdColumnType, ForeignKey("tickets.id"), nullable=False),
    # NULL for a question asked on the workstation (no link): `asked_on` says which.
    Column("token_sha256", String(64), unique=True),
    Column("asked_on", String(16), nullable=False, server_default="mail"),
    Column("asked_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("rating", SmallInteger()),
    Column("comment", Text(), nullable=False, server_default=""),
    Column("answered_at", UtcDateTime()),
    Index(None, "ticket_id"),
)

# Monitoring (server/domain/monitoring.py, docs/monitoring.md). A group: its interval (0: off),
# the collectors its light collection runs ("" the default set), how many clear checks in a row
# close a ticket, and threshold overrides (a JSON object of Thresholds fields).
agent_groups = Table(
    "agent_groups",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("interval_s", Integer(), nullable=False),
    Column("collectors", Text(), nullable=False, server_default=""),
    Column("clear_checks", Integer(), nullable=False, server_default="3"),
    Column("thresholds", Text(), nullable=False, server_default=""),
    Column("updated_by", String(64), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

# Each monitored agent's group (NULL: the default) and next check; the conditional update of
# next_check_at is what lets one replica, not several, queue a round's collection.
monitoring_agents = Table(
    "monitoring_agents",
    metadata,
    Column("agent_id", String(26), ForeignKey("agents.id"), primary_key=True),
    Column("group_name", String(64), ForeignKey("agent_groups.name")),
    Column("next_check_at", UtcDateTime(), nullable=False),
    Column("last_command_id", String(64), nullable=False, server_default=""),
    Index(None, "next_check_at"),
)

# The one open monitoring ticket per machine and finding, and its clear checks in a row; the
# row goes when the ticket is resolved (by the rule or by hand), freeing the slot.
monitoring_findings = Table(
    "monitoring_findings",
    metadata,
    Column("id", IdColumnType, primary_key=True, autoincrement=True),
    Column("agent_id", String(26), ForeignKey("agents.id"), nullable=False),
    Column("check_id", String(64), nullable=False),
    Column("ticket_id", IdColumnType, ForeignKey("tickets.id"), nullable=False),
    Column("clear_streak", Integer(), nullable=False, server_default="0"),
    Column("opened_at", UtcDateTime(), nullable=False),
    # When its ticket was freed (cleared, or resolved by hand); NULL while it holds the slot.
    Column("cleared_at", UtcDateTime()),
    UniqueConstraint("agent_id", "check_id"),
)
