"""Agentless reach: the server reaches a machine without an agent over SSH (paramiko) and
WinRM (pywinrm), behind one RemoteShell protocol (shell.py)."""
