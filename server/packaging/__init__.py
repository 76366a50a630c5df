"""The agent's installers, built by `sonde-server package`: today the Windows MSI."""
