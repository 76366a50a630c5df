<#
.SYNOPSIS
Update Microsoft Defender's signatures and run a quick scan, then list what it found.
.NOTES
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 done (threats found are listed, not an error); 1 failed (the error is on stderr);
2 refused; 3 Defender is not the active antivirus here.
#>
[CmdletBinding()]
param(
    [bool]$Scan = $true,
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$status = Get-MpComputerStatus -ErrorAction SilentlyContinue
if ($null -eq $status -or -not $status.AMServiceEnabled) {
    [Console]::Error.WriteLine('Microsoft Defender is not running on this computer (another antivirus may be active)')
    exit 3
}
if ($DryRun) {
    Write-Output "dry run: would update Defender's signatures (now $($status.AntivirusSignatureAge) days old)"
    if ($Scan) { Write-Output "dry run: would run a quick scan (the last was $($status.QuickScanAge) days ago)" }
    exit 0
}
$started = Get-Date
Update-MpSignature
Write-Output "signatures updated to $((Get-MpComputerStatus).AntivirusSignatureVersion)"
if ($Scan) {
    Start-MpScan -ScanType QuickScan
    $found = @(Get-MpThreatDetection -ErrorAction SilentlyContinue | Where-Object { $_.InitialDetectionTime -ge $started })
    Write-Output "quick scan finished: $($found.Count) detections"
    $found | ForEach-Object { Write-Output "  $($_.ThreatID) $($_.Resources -join ', ') ($($_.ActionSuccess))" }
}
