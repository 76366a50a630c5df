<#
.SYNOPSIS
Apply group policy again now, computer part (gpupdate /target:computer /force). It never logs
anyone off nor restarts: a policy that needs that waits for the next logon or restart.
.NOTES
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 done; 1 failed (the error is on stderr); 2 refused; 3 not a domain member.
#>
[CmdletBinding()]
param(
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-CimInstance -ClassName Win32_ComputerSystem).PartOfDomain) {
    [Console]::Error.WriteLine('this computer is not in a domain: it has no group policy to refresh')
    exit 3
}
if ($DryRun) {
    Write-Output 'dry run: would run gpupdate /target:computer /force /wait:600 (no logoff, no restart)'
    exit 0
}
# gpupdate asks whether to log off or restart when a policy needs it: the answer is no.
'N' | & gpupdate.exe /target:computer /force /wait:600
if ($LASTEXITCODE -ne 0) { throw "gpupdate failed with exit code $LASTEXITCODE; see the GroupPolicy event log" }
Write-Output 'computer policy applied again'
