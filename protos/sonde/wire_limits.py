"""What the agent and the server agree on beyond the .proto files (docs/protocol.md).

Plain constants, no imports: the agent's `run` path reads this module, and the server's
side must not be needed to read it.
"""

# Trailing metadata on a RESOURCE_EXHAUSTED answer to AgentService.Session: the number of
# milliseconds (decimal ASCII) the agent waits before its next attempt. Such a refusal does
# not grow the agent's reconnect backoff.
RETRY_AFTER_MS_KEY = "sonde-retry-after-ms"
