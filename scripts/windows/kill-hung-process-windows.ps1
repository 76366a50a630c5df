<#
.SYNOPSIS
End one hung program: ask its window to close, then end it after a grace period. It is named
by its id and its name together, so that an id reused by another program is refused.
.NOTES
Parameters arrive through the agent's parameter file, bound to param() below.
Exit: 0 ended or already gone; 1 it would not end; 2 refused (a name that does not match, a
process Windows or Sonde needs).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateRange(5, 2147483647)]
    [int]$ProcessId,
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[A-Za-z0-9._ -]{1,64}$')]
    [string]$ProcessName,
    [ValidateRange(1, 60)]
    [int]$GraceS = 10,
    [switch]$DryRun
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$protected = @('System', 'Idle', 'smss', 'csrss', 'wininit', 'winlogon', 'services', 'lsass',
    'svchost', 'dwm', 'fontdrvhost', 'MsMpEng', 'sonde-agent', 'pythonservice')
$process = Get-Process -Id $ProcessId -ErrorAction SilentlyContinue
if ($null -eq $process) {
    Write-Output "process $ProcessId is not running: nothing to do"
    exit 0
}
$wanted = $ProcessName -replace '\.exe$', ''
if ($process.ProcessName -ne $wanted) {
    [Console]::Error.WriteLine("refused: process $ProcessId is $($process.ProcessName), not $wanted (its id may have been reused)")
    exit 2
}
if ($protected -contains $process.ProcessName) {
    [Console]::Error.WriteLine("refused: $($process.ProcessName) is needed by Windows or by Sonde; restart the computer instead")
    exit 2
}
# Every process once, so that no value is written into a query string.
$rows = @{}
foreach ($row in @(Get-CimInstance -ClassName Win32_Process)) { $rows[[int]$row.ProcessId] = $row }
$ancestor = $PID
$hops = 0
while ($rows.ContainsKey($ancestor) -and $hops++ -lt 64) {
    if ($ancestor -eq $ProcessId) {
        [Console]::Error.WriteLine("refused: process $ProcessId runs this script (it is the agent or its parent)")
        exit 2
    }
    $parent = [int]$rows[$ancestor].ParentProcessId
    if ($parent -eq $ancestor) { break }
    $ancestor = $parent
}
$owner = 'unknown'
if ($rows.ContainsKey($ProcessId)) {
    $owner = (Invoke-CimMethod -InputObject $rows[$ProcessId] -MethodName GetOwner).User
}
$responding = $process.Responding
if ($DryRun) {
    Write-Output "dry run: would end process $ProcessId ($($process.ProcessName), of $owner, responding: $responding): close its window, then end it after $GraceS s"
    exit 0
}
$how = 'closing its window'
if ($process.MainWindowHandle -ne [IntPtr]::Zero) { [void]$process.CloseMainWindow() }
if (-not $process.WaitForExit($GraceS * 1000)) {
    Stop-Process -Id $ProcessId -Force
    $how = "ending it after $GraceS s"
    if (-not $process.WaitForExit(10000)) {
        throw "process $ProcessId ($wanted) did not end even when forced"
    }
}
Write-Output "ended process $ProcessId ($wanted, of $owner) by $how"
