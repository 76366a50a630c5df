<#
.SYNOPSIS
Remove temporary files not written nor read for N days: Windows\Temp and every profile's
AppData\Local\Temp. Locked files are skipped; links and junctions are never followed.
.NOTES
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 done or nothing to do; 1 failed (the error is on stderr); 2 refused.
#>
[CmdletBinding()]
param(
    [ValidateRange(1, 365)]
    [int]$OlderThanDays = 7,
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if ($OlderThanDays -lt 1 -or $OlderThanDays -gt 365) {
    [Console]::Error.WriteLine('refused: OlderThanDays must be from 1 to 365')
    exit 2
}
$cutoff = (Get-Date).AddDays(-$OlderThanDays)

function Get-OldFile([string]$Root) {
    # Walks by hand so that a junction or a link is never entered.
    $folders = [System.Collections.Generic.Stack[string]]::new()
    $folders.Push($Root)
    while ($folders.Count -gt 0) {
        $folder = $folders.Pop()
        foreach ($item in @(Get-ChildItem -LiteralPath $folder -Force -ErrorAction SilentlyContinue)) {
            if ($item.Attributes -band [IO.FileAttributes]::ReparsePoint) { continue }
            if ($item.PSIsContainer) { $folders.Push($item.FullName); continue }
            if ($item.LastWriteTime -lt $cutoff -and $item.LastAccessTime -lt $cutoff) { $item }
        }
    }
}

$roots = @(Join-Path $env:SystemRoot 'Temp')
$profiles = Get-CimInstance -ClassName Win32_UserProfile | Where-Object { -not $_.Special }
foreach ($userProfile in $profiles) {
    $roots += Join-Path $userProfile.LocalPath 'AppData\Local\Temp'
}
$totalFiles = 0
$totalBytes = [long]0
foreach ($root in $roots) {
    if (-not (Test-Path -LiteralPath $root -PathType Container)) { continue }
    $files = @(Get-OldFile $root)
    $bytes = [long]0
    $removed = 0
    foreach ($file in $files) {
        if ($DryRun) { $bytes += $file.Length; $removed++; continue }
        try {
            Remove-Item -LiteralPath $file.FullName -Force
            $bytes += $file.Length
            $removed++
        } catch {
            continue  # in use: left for next time
        }
    }
    $totalFiles += $removed
    $totalBytes += $bytes
    if ($DryRun) {
        Write-Output "dry run: would remove $removed files ($bytes bytes) from $root"
    } else {
        Write-Output "removed $removed of $($files.Count) old files ($bytes bytes) from $root"
    }
}
if ($DryRun) {
    Write-Output "dry run: would free $totalBytes bytes in $totalFiles files; nothing was removed"
} else {
    Write-Output "freed $totalBytes bytes in $totalFiles files"
}
