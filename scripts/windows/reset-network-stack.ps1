<#
.SYNOPSIS
Reset the network stack: netsh winsock reset and netsh int ip reset, and flush DNS. Takes
effect at the next restart, which this script does not start.
.NOTES
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 done (restart needed); 1 failed (the error is on stderr); 2 refused.
#>
[CmdletBinding()]
param(
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$log = Join-Path $env:SystemRoot 'Temp\sonde-ip-reset.log'
if ($DryRun) {
    Write-Output 'dry run: would run netsh winsock reset, netsh int ip reset (log in the Windows Temp folder) and clear the DNS cache'
    Write-Output 'dry run: the reset takes effect at the next restart, which this script does not start'
    exit 0
}
& netsh.exe winsock reset
if ($LASTEXITCODE -ne 0) { throw "netsh winsock reset failed with exit code $LASTEXITCODE" }
& netsh.exe int ip reset $log
if ($LASTEXITCODE -ne 0) { throw "netsh int ip reset failed with exit code $LASTEXITCODE; see $log" }
Clear-DnsClientCache
Write-Output 'network stack reset: restart the computer to finish (reboot-with-notice-windows)'
