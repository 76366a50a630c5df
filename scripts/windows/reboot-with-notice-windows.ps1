<#
.SYNOPSIS
Restart the computer after a notice to the logged-on users (shutdown /r /t SECONDS /c MESSAGE),
or cancel a restart scheduled before (Cancel: shutdown /a).
.NOTES
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 scheduled or cancelled; 1 failed (the error is on stderr); 2 refused.
#>
[CmdletBinding()]
param(
    [ValidateRange(1, 240)]
    [int]$DelayMinutes = 10,
    [ValidatePattern("^[A-Za-z0-9][A-Za-z0-9 .,:;'!?()/-]{0,199}$")]
    [string]$Message = 'IT support will restart this computer: please save your work.',
    [bool]$Cancel = $false,
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if ($DelayMinutes -lt 1 -or $DelayMinutes -gt 240) {
    [Console]::Error.WriteLine('refused: DelayMinutes must be from 1 to 240')
    exit 2
}
$shutdown = Join-Path $env:SystemRoot 'System32\shutdown.exe'
if ($Cancel) {
    if ($DryRun) { Write-Output 'dry run: would cancel a scheduled restart (shutdown /a)'; exit 0 }
    & $shutdown /a
    if ($LASTEXITCODE -eq 1116) { Write-Output 'no restart was scheduled: nothing to cancel'; exit 0 }
    if ($LASTEXITCODE -ne 0) { throw "shutdown /a failed with exit code $LASTEXITCODE" }
    Write-Output 'cancelled the scheduled restart'
    exit 0
}
$seconds = $DelayMinutes * 60
if ($DryRun) {
    Write-Output "dry run: would restart this computer in $DelayMinutes minutes, telling users: $Message"
    exit 0
}
# The message is one argument of its own: PowerShell quotes it for shutdown.exe.
& $shutdown /r /t $seconds /d p:4:1 /c $Message
if ($LASTEXITCODE -eq 1190) { Write-Output 'a restart is already scheduled: cancel it first to change it'; exit 0 }
if ($LASTEXITCODE -ne 0) { throw "shutdown /r failed with exit code $LASTEXITCODE" }
Write-Output "restart scheduled in $DelayMinutes minutes; cancel it with this script and cancel=true"
