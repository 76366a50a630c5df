<#
.SYNOPSIS
Clear the user's Office caches: the Office document cache and Outlook's RoamCache; with
RebuildOst, set Outlook's offline mailbox (.ost) aside so that Outlook downloads it again.
.NOTES
Runs in the logged-on user's session (the manifest's user_session).
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 done or nothing to do; 1 failed (the error is on stderr); 2 refused (Office is open).
#>
[CmdletBinding()]
param(
    [bool]$CloseOffice = $false,
    [bool]$RebuildOst = $false,
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$apps = @('OUTLOOK', 'WINWORD', 'EXCEL', 'POWERPNT', 'ONENOTE', 'MSACCESS', 'MSPUB')
$session = (Get-Process -Id $PID).SessionId
$open = @(Get-Process -Name $apps -ErrorAction SilentlyContinue | Where-Object { $_.SessionId -eq $session })
$caches = @(
    (Join-Path $env:LOCALAPPDATA 'Microsoft\Office\16.0\OfficeFileCache'),
    (Join-Path $env:LOCALAPPDATA 'Microsoft\Outlook\RoamCache')
) | Where-Object { Test-Path -LiteralPath $_ }
$outlookData = Join-Path $env:LOCALAPPDATA 'Microsoft\Outlook'
$osts = @(Get-ChildItem -LiteralPath $outlookData -Filter '*.ost' -File -ErrorAction SilentlyContinue)

if ($open.Count -gt 0 -and -not $CloseOffice) {
    $names = ($open | ForEach-Object { $_.ProcessName } | Sort-Object -Unique) -join ', '
    [Console]::Error.WriteLine("refused: $names is open; ask the user to close it, or run with close_office")
    exit 2
}
if ($DryRun) {
    if ($open.Count -gt 0) { Write-Output "dry run: would close $($open.Count) Office programs" }
    foreach ($cache in $caches) { Write-Output "dry run: would empty $cache" }
    if ($RebuildOst) { foreach ($ost in $osts) { Write-Output "dry run: would rename $($ost.FullName) to .ost.bak" } }
    exit 0
}
if ($open.Count -gt 0) {
    $open | Stop-Process -Force
    Start-Sleep -Seconds 3
}
foreach ($cache in $caches) {
    Get-ChildItem -LiteralPath $cache -Force -ErrorAction SilentlyContinue |
        Remove-Item -Recurse -Force -ErrorAction SilentlyContinue
    Write-Output "emptied $cache"
}
if ($RebuildOst) {
    foreach ($ost in $osts) {
        $aside = "$($ost.FullName).bak"
        if (Test-Path -LiteralPath $aside) { Remove-Item -LiteralPath $aside -Force }
        Rename-Item -LiteralPath $ost.FullName -NewName (Split-Path -Leaf $aside)
        Write-Output "set $($ost.Name) aside: Outlook downloads the mailbox again at its next start"
    }
}
