<#
.SYNOPSIS
Flush the DNS client cache, and register this computer's name in DNS again if asked.
.NOTES
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 done; 1 failed (the error is on stderr); 2 refused; 3 cannot run here.
#>
[CmdletBinding()]
param(
    [bool]$RegisterDns = $false,
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$entries = @(Get-DnsClientCache).Count
if ($DryRun) {
    Write-Output "dry run: would clear the DNS client cache ($entries entries)"
    if ($RegisterDns) { Write-Output 'dry run: would register this computer in DNS (ipconfig /registerdns)' }
    exit 0
}
Clear-DnsClientCache
Write-Output "cleared the DNS client cache ($entries entries)"
if ($RegisterDns) {
    & ipconfig.exe /registerdns | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "ipconfig /registerdns failed with exit code $LASTEXITCODE" }
    Write-Output 'asked DNS to register this computer again (ipconfig /registerdns)'
}
