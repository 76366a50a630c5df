"""The remediation catalog: manifests, signed bundles and their checks, shared by the agent,
the server and the offline signing tool (sonde-catalog)."""
