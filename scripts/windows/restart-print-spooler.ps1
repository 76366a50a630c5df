<#
.SYNOPSIS
Restart the print spooler; with ClearJobs, delete every waiting print job while it is stopped.
.NOTES
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 done; 1 failed (the error is on stderr); 2 refused; 3 cannot run here.
#>
[CmdletBinding()]
param(
    [bool]$ClearJobs = $false,
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$spooler = Get-Service -Name 'Spooler' -ErrorAction SilentlyContinue
if ($null -eq $spooler) {
    [Console]::Error.WriteLine('the Print Spooler service is not on this computer')
    exit 3
}
$queue = Join-Path $env:SystemRoot 'System32\spool\PRINTERS'
$jobs = @(Get-ChildItem -LiteralPath $queue -File -Force -ErrorAction SilentlyContinue)
if ($DryRun) {
    if ($ClearJobs) {
        Write-Output "dry run: would stop the spooler ($($spooler.Status)), delete $($jobs.Count) job files in $queue and start it"
    } else {
        Write-Output "dry run: would restart the spooler ($($spooler.Status)); $($jobs.Count) job files stay queued"
    }
    exit 0
}
Stop-Service -Name 'Spooler' -Force
(Get-Service -Name 'Spooler').WaitForStatus('Stopped', [TimeSpan]::FromSeconds(30))
if ($ClearJobs) {
    foreach ($job in $jobs) { Remove-Item -LiteralPath $job.FullName -Force }
    Write-Output "deleted $($jobs.Count) job files from $queue"
}
Start-Service -Name 'Spooler'
(Get-Service -Name 'Spooler').WaitForStatus('Running', [TimeSpan]::FromSeconds(30))
Write-Output 'restarted the print spooler'
