<#
.SYNOPSIS
Clear Microsoft Teams' cache for the user (new Teams and classic Teams), closing Teams first.
.NOTES
Runs in the logged-on user's session (the manifest's user_session).
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 done or nothing to do; 1 failed (the error is on stderr); 2 refused.
#>
[CmdletBinding()]
param(
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$session = (Get-Process -Id $PID).SessionId
$teams = @(Get-Process -Name @('ms-teams', 'Teams') -ErrorAction SilentlyContinue | Where-Object { $_.SessionId -eq $session })
$caches = @(
    (Join-Path $env:LOCALAPPDATA 'Packages\MSTeams_8wekyb3d8bbwe\LocalCache\Microsoft\MSTeams'),
    (Join-Path $env:APPDATA 'Microsoft\Teams\Cache'),
    (Join-Path $env:APPDATA 'Microsoft\Teams\Code Cache'),
    (Join-Path $env:APPDATA 'Microsoft\Teams\GPUCache'),
    (Join-Path $env:APPDATA 'Microsoft\Teams\blob_storage')
) | Where-Object { Test-Path -LiteralPath $_ }
if (@($caches).Count -eq 0) {
    Write-Output 'Teams has no cache for this user: nothing to do'
    exit 0
}
if ($DryRun) {
    Write-Output "dry run: would close Teams ($($teams.Count) processes) and empty:"
    $caches | ForEach-Object { Write-Output "  $_" }
    exit 0
}
$teams | Stop-Process -Force
Start-Sleep -Seconds 3
foreach ($cache in $caches) {
    Get-ChildItem -LiteralPath $cache -Force -ErrorAction SilentlyContinue |
        Remove-Item -Recurse -Force -ErrorAction SilentlyContinue
    Write-Output "emptied $cache"
}
Write-Output 'Teams cache cleared: the user signs in again when Teams starts'
