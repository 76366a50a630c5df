<#
.SYNOPSIS
Restart one Windows service from an allow-list of services that are safe to restart.
.NOTES
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 done; 1 failed (the error is on stderr); 2 refused; 3 cannot run here.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateSet('Spooler', 'W32Time', 'wuauserv', 'BITS', 'CryptSvc', 'Audiosrv', 'WSearch', 'Themes', 'WlanSvc')]
    [string]$ServiceName,
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$service = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
if ($null -eq $service) {
    [Console]::Error.WriteLine("the service $ServiceName is not on this computer")
    exit 3
}
if ($service.StartType -eq 'Disabled') {
    [Console]::Error.WriteLine("refused: the service $ServiceName is disabled; enabling it is a policy decision")
    exit 2
}
if ($DryRun) {
    Write-Output "dry run: would restart $ServiceName ($($service.DisplayName)), now $($service.Status)"
    exit 0
}
Restart-Service -Name $ServiceName -Force
(Get-Service -Name $ServiceName).WaitForStatus('Running', [TimeSpan]::FromSeconds(60))
Write-Output "restarted $ServiceName ($($service.DisplayName))"
