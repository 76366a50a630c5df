<#
.SYNOPSIS
Free space on the system drive: downloaded update files, the recycle bin of every user, and,
if asked, superseded components (DISM /StartComponentCleanup).
.NOTES
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 done; 1 failed (the error is on stderr); 2 refused.
#>
[CmdletBinding()]
param(
    [bool]$EmptyRecycleBin = $true,
    [bool]$CleanupComponents = $false,
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Get-FolderBytes([string]$Path) {
    if (-not (Test-Path -LiteralPath $Path)) { return [long]0 }
    $sum = (Get-ChildItem -LiteralPath $Path -Recurse -Force -File -ErrorAction SilentlyContinue |
        Measure-Object -Property Length -Sum).Sum
    if ($null -eq $sum) { return [long]0 }
    return [long]$sum
}

$drive = $env:SystemDrive
$downloads = Join-Path $env:SystemRoot 'SoftwareDistribution\Download'
$recycleBin = Join-Path $drive '$Recycle.Bin'
$freeBefore = (Get-PSDrive -Name $drive.TrimEnd(':')).Free
if ($DryRun) {
    Write-Output "dry run: would stop wuauserv and BITS, delete $(Get-FolderBytes $downloads) bytes of downloaded updates in $downloads, and start them again"
    if ($EmptyRecycleBin) { Write-Output "dry run: would empty the recycle bin ($(Get-FolderBytes $recycleBin) bytes)" }
    if ($CleanupComponents) { Write-Output 'dry run: would run DISM /Online /Cleanup-Image /StartComponentCleanup' }
    exit 0
}

$services = @('wuauserv', 'BITS')
Stop-Service -Name $services -Force
try {
    Get-ChildItem -LiteralPath $downloads -Force -ErrorAction SilentlyContinue |
        Remove-Item -Recurse -Force -ErrorAction SilentlyContinue
} finally {
    Start-Service -Name $services
}
Write-Output "deleted downloaded updates in $downloads"
if ($EmptyRecycleBin) {
    Clear-RecycleBin -DriveLetter $drive.TrimEnd(':') -Force -ErrorAction SilentlyContinue
    Write-Output 'emptied the recycle bin'
}
if ($CleanupComponents) {
    & dism.exe /Online /Cleanup-Image /StartComponentCleanup /NoRestart
    if ($LASTEXITCODE -ne 0) { throw "DISM /StartComponentCleanup failed with exit code $LASTEXITCODE" }
}
$freed = (Get-PSDrive -Name $drive.TrimEnd(':')).Free - $freeBefore
Write-Output "freed $freed bytes on $drive"
