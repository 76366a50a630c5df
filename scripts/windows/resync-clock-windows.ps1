<#
.SYNOPSIS
Set the clock from its time source now: start the Windows Time service and w32tm /resync.
On a domain member, take the time from the domain hierarchy first.
.NOTES
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 done; 1 failed (the error is on stderr); 2 refused.
#>
[CmdletBinding()]
param(
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$inDomain = (Get-CimInstance -ClassName Win32_ComputerSystem).PartOfDomain
$service = Get-Service -Name 'W32Time'
if ($DryRun) {
    if ($inDomain) { Write-Output 'dry run: would take time from the domain (w32tm /config /syncfromflags:domhier /update)' }
    Write-Output "dry run: would start the Windows Time service (now $($service.Status)) and run w32tm /resync /force"
    exit 0
}
if ($service.StartType -eq 'Disabled') { Set-Service -Name 'W32Time' -StartupType Manual }
if ($service.Status -ne 'Running') { Start-Service -Name 'W32Time' }
if ($inDomain) {
    & w32tm.exe /config /syncfromflags:domhier /update
    if ($LASTEXITCODE -ne 0) { throw "w32tm /config failed with exit code $LASTEXITCODE" }
}
& w32tm.exe /resync /force
if ($LASTEXITCODE -ne 0) { throw "w32tm /resync failed with exit code $LASTEXITCODE (is the time source reachable?)" }
& w32tm.exe /query /status
