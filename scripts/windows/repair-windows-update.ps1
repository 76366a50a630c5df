<#
.SYNOPSIS
Reset the Windows Update components: stop the services, set SoftwareDistribution and catroot2
aside, cancel BITS transfers, start the services and ask for a new scan.
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

$services = @('wuauserv', 'BITS', 'CryptSvc', 'msiserver')
$folders = @(
    (Join-Path $env:SystemRoot 'SoftwareDistribution'),
    (Join-Path $env:SystemRoot 'System32\catroot2')
)
if ($DryRun) {
    Write-Output "dry run: would stop $($services -join ', '), cancel every BITS transfer,"
    foreach ($folder in $folders) { Write-Output "dry run: would rename $folder to $folder.old (replacing an older .old)" }
    Write-Output 'dry run: would start the services again and start an update scan (UsoClient StartScan)'
    exit 0
}

Stop-Service -Name $services -Force -ErrorAction SilentlyContinue
try {
    Get-BitsTransfer -AllUsers -ErrorAction SilentlyContinue | Remove-BitsTransfer -ErrorAction SilentlyContinue
    foreach ($folder in $folders) {
        if (-not (Test-Path -LiteralPath $folder)) { continue }
        $aside = "$folder.old"
        if (Test-Path -LiteralPath $aside) { Remove-Item -LiteralPath $aside -Recurse -Force }
        Rename-Item -LiteralPath $folder -NewName (Split-Path -Leaf $aside)
        Write-Output "set $folder aside as $aside"
    }
} finally {
    Start-Service -Name @('CryptSvc', 'BITS', 'wuauserv')
}
& UsoClient.exe StartScan
Write-Output 'Windows Update components reset; an update scan was started (updates download again)'
