<#
.SYNOPSIS
Empty the cache of Edge, Chrome or Firefox for every user profile on this computer. Cookies,
passwords, history and bookmarks are kept.
.NOTES
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 done or nothing to do; 1 failed (the error is on stderr); 2 refused (a browser is open).
#>
[CmdletBinding()]
param(
    [ValidateSet('edge', 'chrome', 'firefox', 'all')]
    [string]$Browser = 'all',
    [bool]$CloseBrowsers = $false,
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$chosen = if ($Browser -eq 'all') { @('edge', 'chrome', 'firefox') } else { @($Browser) }
$processes = @{ edge = 'msedge'; chrome = 'chrome'; firefox = 'firefox' }
$open = @(Get-Process -Name @($chosen | ForEach-Object { $processes[$_] }) -ErrorAction SilentlyContinue)
if ($open.Count -gt 0 -and -not $CloseBrowsers) {
    $names = ($open | ForEach-Object { $_.ProcessName } | Sort-Object -Unique) -join ', '
    [Console]::Error.WriteLine("refused: $names is open; ask the user to close it, or run with close_browsers")
    exit 2
}

$folders = @()
$profiles = Get-CimInstance -ClassName Win32_UserProfile | Where-Object { -not $_.Special }
foreach ($userProfile in $profiles) {
    $local = Join-Path $userProfile.LocalPath 'AppData\Local'
    $chromium = @{ edge = 'Microsoft\Edge\User Data'; chrome = 'Google\Chrome\User Data' }
    foreach ($name in $chosen) {
        if ($name -eq 'firefox') {
            $root = Join-Path $local 'Mozilla\Firefox\Profiles'
            $folders += Get-ChildItem -LiteralPath $root -Directory -ErrorAction SilentlyContinue |
                ForEach-Object { Join-Path $_.FullName 'cache2' }
            continue
        }
        $root = Join-Path $local $chromium[$name]
        foreach ($browserProfile in @(Get-ChildItem -LiteralPath $root -Directory -ErrorAction SilentlyContinue)) {
            foreach ($cache in @('Cache', 'Code Cache', 'GPUCache')) {
                $folders += Join-Path $browserProfile.FullName $cache
            }
        }
    }
}
$folders = @($folders | Where-Object { Test-Path -LiteralPath $_ })
if ($folders.Count -eq 0) {
    Write-Output "no cache of $($chosen -join ', ') on this computer: nothing to do"
    exit 0
}
if ($DryRun) {
    if ($open.Count -gt 0) { Write-Output "dry run: would close $($open.Count) browser processes" }
    $folders | ForEach-Object { Write-Output "dry run: would empty $_" }
    exit 0
}
if ($open.Count -gt 0) {
    $open | Stop-Process -Force
    Start-Sleep -Seconds 3
}
foreach ($folder in $folders) {
    Get-ChildItem -LiteralPath $folder -Force -ErrorAction SilentlyContinue |
        Remove-Item -Recurse -Force -ErrorAction SilentlyContinue
    Write-Output "emptied $folder"
}
