<#
.SYNOPSIS
Repair the component store and the system files: DISM /RestoreHealth, then sfc /scannow.
.NOTES
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 done (sfc's verdict is in the output); 1 failed (the error is on stderr); 2 refused.
#>
[CmdletBinding()]
param(
    [bool]$ScanOnly = $false,
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$dismAction = if ($ScanOnly) { '/ScanHealth' } else { '/RestoreHealth' }
$sfcAction = if ($ScanOnly) { '/verifyonly' } else { '/scannow' }
if ($DryRun) {
    Write-Output "dry run: would run DISM /Online /Cleanup-Image $dismAction, then sfc $sfcAction (15 to 60 minutes)"
    exit 0
}
& dism.exe /Online /Cleanup-Image $dismAction /NoRestart
if ($LASTEXITCODE -ne 0) { throw "DISM $dismAction failed with exit code $LASTEXITCODE (a repair source may be needed)" }
& sfc.exe $sfcAction
$sfcExit = $LASTEXITCODE
$log = Join-Path $env:SystemRoot 'Logs\CBS\CBS.log'
Get-Content -LiteralPath $log -Tail 40 -ErrorAction SilentlyContinue
if ($sfcExit -ne 0) { throw "sfc $sfcAction ended with exit code $sfcExit; see $log" }
Write-Output "DISM $dismAction and sfc $sfcAction finished"
