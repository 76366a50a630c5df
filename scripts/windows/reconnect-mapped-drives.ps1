<#
.SYNOPSIS
Reconnect the network drives mapped in the user's session that show as disconnected.
.NOTES
Runs in the logged-on user's session (the manifest's user_session): mapped drives belong to
the user's logon, and SYSTEM sees none of them.
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 done or nothing to do; 1 a share still cannot be reached (named on stderr); 3 this
Windows has no SMB client cmdlets.
#>
[CmdletBinding()]
param(
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if (-not (Get-Command -Name 'Get-SmbMapping' -ErrorAction SilentlyContinue)) {
    [Console]::Error.WriteLine('this Windows has no Get-SmbMapping (the SmbShare module)')
    exit 3
}
$mappings = @(Get-SmbMapping | Where-Object { $_.LocalPath })
if ($mappings.Count -eq 0) {
    Write-Output 'no network drive is mapped in this session: nothing to do'
    exit 0
}
foreach ($mapping in $mappings) {
    Write-Output "$($mapping.LocalPath) $($mapping.RemotePath): $($mapping.Status)"
}
$lost = @($mappings | Where-Object { $_.Status -ne 'OK' })
if ($lost.Count -eq 0) {
    Write-Output 'every mapped drive is connected: nothing to do'
    exit 0
}
if ($DryRun) {
    Write-Output "dry run: would reach $($lost.Count) drives to reconnect them:"
    $lost | ForEach-Object { Write-Output "  $($_.LocalPath) $($_.RemotePath)" }
    exit 0
}
$failed = 0
foreach ($mapping in $lost) {
    $root = "$($mapping.LocalPath)\"
    if (Test-Path -LiteralPath $root -ErrorAction SilentlyContinue) {
        Write-Output "reconnected $($mapping.LocalPath) $($mapping.RemotePath)"
    } else {
        $failed += 1
        [Console]::Error.WriteLine("$($mapping.RemotePath) cannot be reached: $($mapping.LocalPath) stays disconnected")
    }
}
if ($failed -gt 0) { exit 1 }
