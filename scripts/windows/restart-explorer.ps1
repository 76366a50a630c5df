<#
.SYNOPSIS
Restart Windows Explorer (the taskbar, the desktop, file windows) in the user's session.
.NOTES
Runs in the logged-on user's session (the manifest's user_session).
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 done; 1 failed (the error is on stderr); 2 refused.
#>
[CmdletBinding()]
param(
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$session = (Get-Process -Id $PID).SessionId
$explorers = @(Get-Process -Name 'explorer' -ErrorAction SilentlyContinue | Where-Object { $_.SessionId -eq $session })
if ($DryRun) {
    Write-Output "dry run: would end $($explorers.Count) Explorer processes in session $session and start Explorer again (open folder windows close)"
    exit 0
}
$explorers | Stop-Process -Force
$deadline = (Get-Date).AddSeconds(10)
do {
    Start-Sleep -Milliseconds 500
    $running = @(Get-Process -Name 'explorer' -ErrorAction SilentlyContinue | Where-Object { $_.SessionId -eq $session })
} while ($running.Count -eq 0 -and (Get-Date) -lt $deadline)
if ($running.Count -eq 0) { Start-Process -FilePath (Join-Path $env:SystemRoot 'explorer.exe') }
Write-Output "restarted Explorer in session $session"
