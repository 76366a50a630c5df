# Sonde's Windows collection: the facts of WINDOWS.md section 4, printed as one JSON document
# (schema sonde.windows.collect/1) that sonde.agent.collectors.windows.document parses.
# The agent runs it as SYSTEM; the server sends the same bytes over WinRM. It takes no
# parameters, changes nothing, and reads no BitLocker key: protector types only.
# Each section is read on its own: one that fails is named under "errors" with its message.
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$sections = [ordered]@{}
$errors = [ordered]@{}

function ConvertTo-Utc($When) {
    if ($null -eq $When) { return $null }
    $moment = [DateTime]$When
    if ($moment.Year -lt 1980) { return $null }
    return $moment.ToUniversalTime().ToString('o')
}

function Add-Section([string]$Name, [scriptblock]$Read) {
    try {
        $sections[$Name] = & $Read
    } catch {
        $errors[$Name] = '{0}: {1}' -f $_.Exception.GetType().Name, $_.Exception.Message
    }
}

function Get-ServiceRow([string]$Name) {
    $service = Get-CimInstance -ClassName Win32_Service -Filter ("Name='{0}'" -f $Name)
    if ($null -eq $service) { return [ordered]@{ state = 'absent'; start_mode = '' } }
    return [ordered]@{ state = [string]$service.State; start_mode = [string]$service.StartMode }
}

# --- registry: the keys parse.py reads (software, pending reboot, proxy, OS release, DNS) ---
$hives = @{ HKLM = [Microsoft.Win32.Registry]::LocalMachine; HKU = [Microsoft.Win32.Registry]::Users }
$keys = [ordered]@{}

function Read-Key([string]$Path) {
    $hive, $subkey = $Path -split '\\', 2
    try {
        $key = if ($subkey) { $hives[$hive].OpenSubKey($subkey) } else { $hives[$hive] }
    } catch {
        return @()  # not ours to read: like an absent key, as winreg_view.py says
    }
    if ($null -eq $key) { return @() }
    $values = [ordered]@{}
    foreach ($name in $key.GetValueNames()) {
        $value = $key.GetValue($name, $null, 'DoNotExpandEnvironmentNames')
        if ($value -is [string] -or $value -is [int] -or $value -is [long] -or $value -is [string[]]) {
            $values[$name] = $value
        }
    }
    $subkeys = @($key.GetSubKeyNames())
    $keys[$Path] = [ordered]@{ values = $values; subkeys = $subkeys }
    return $subkeys
}

Add-Section 'registry' {
    $uninstall = 'Software\Microsoft\Windows\CurrentVersion\Uninstall'
    $wu = 'HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate'
    $single = @(
        'HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion',
        'HKLM\HARDWARE\DESCRIPTION\System\CentralProcessor\0',
        'HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending',
        "$wu\Auto Update\RebootRequired",
        "$wu\Auto Update\PostRebootReporting",
        "$wu\Services\Pending",
        'HKLM\SYSTEM\CurrentControlSet\Control\Session Manager',
        'HKLM\SOFTWARE\Microsoft\Updates',
        'HKLM\SYSTEM\CurrentControlSet\Services\Netlogon',
        'HKLM\SYSTEM\CurrentControlSet\Control\ComputerName\ActiveComputerName',
        'HKLM\SYSTEM\CurrentControlSet\Control\ComputerName\ComputerName'
    )
    foreach ($path in $single) { $null = Read-Key $path }
    $interfaces = 'HKLM\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters\Interfaces'
    foreach ($name in (Read-Key $interfaces)) { $null = Read-Key "$interfaces\$name" }
    $roots = @("HKLM\$uninstall", 'HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall')
    foreach ($sid in (Read-Key 'HKU')) {
        if ($sid -match '^S-1-5-21-[\d-]+$') {
            $roots += "HKU\$sid\$uninstall"
            $null = Read-Key "HKU\$sid\Software\Microsoft\Windows\CurrentVersion\Internet Settings"
        }
    }
    foreach ($root in $roots) {
        foreach ($name in (Read-Key $root)) { $null = Read-Key "$root\$name" }
    }
    [ordered]@{ keys = $keys }
}

Add-Section 'system' {
    [ordered]@{
        hostname = [Environment]::MachineName
        architecture = [string]$env:PROCESSOR_ARCHITECTURE
        timezone = [TimeZoneInfo]::Local.Id
        boot_time = ConvertTo-Utc (Get-CimInstance -ClassName Win32_OperatingSystem).LastBootUpTime
    }
}

Add-Section 'memory' {
    $os = Get-CimInstance -ClassName Win32_OperatingSystem
    [ordered]@{
        total_kib = [long]$os.TotalVisibleMemorySize
        free_kib = [long]$os.FreePhysicalMemory
    }
}

Add-Section 'volumes' {
    $system = [string]$env:SystemDrive
    $volumes = foreach ($disk in (Get-CimInstance -ClassName Win32_LogicalDisk -Filter 'DriveType=3')) {
        [ordered]@{
            device = [string]$disk.DeviceID
            filesystem = [string]$disk.FileSystem
            size = [long]$disk.Size
            free = [long]$disk.FreeSpace
            is_system = ([string]$disk.DeviceID -eq $system)
        }
    }
    [ordered]@{ volumes = @($volumes) }
}

Add-Section 'services' {
    $rows = foreach ($service in (Get-CimInstance -ClassName Win32_Service)) {
        [ordered]@{
            name = [string]$service.Name
            display_name = [string]$service.DisplayName
            state = [string]$service.State
            start_mode = [string]$service.StartMode
            path = [string]$service.PathName
        }
    }
    [ordered]@{ services = @($rows) }
}

Add-Section 'network' {
    $adapters = foreach ($config in (Get-NetIPConfiguration)) {
        $gateway = $config.IPv4DefaultGateway | Select-Object -First 1
        $dns = $config.DNSServer | Where-Object { $_.AddressFamily -eq 2 } | ForEach-Object { $_.ServerAddresses }
        [ordered]@{
            interface = [string]$config.InterfaceAlias
            gateway = if ($gateway) { [string]$gateway.NextHop } else { $null }
            dns_servers = @($dns)
        }
    }
    [ordered]@{
        ip_configuration = @($adapters)
        winhttp_proxy = (& netsh.exe winhttp show proxy | Out-String)
    }
}

Add-Section 'battery' {
    $battery = Get-CimInstance -ClassName Win32_Battery | Select-Object -First 1
    if ($null -eq $battery) { return [ordered]@{ present = $false } }
    $static = Get-CimInstance -Namespace 'root\wmi' -ClassName BatteryStaticData -ErrorAction SilentlyContinue | Select-Object -First 1
    $full = Get-CimInstance -Namespace 'root\wmi' -ClassName BatteryFullChargedCapacity -ErrorAction SilentlyContinue | Select-Object -First 1
    $cycles = Get-CimInstance -Namespace 'root\wmi' -ClassName BatteryCycleCount -ErrorAction SilentlyContinue | Select-Object -First 1
    [ordered]@{
        present = $true
        charge_percent = [int]$battery.EstimatedChargeRemaining
        plugged_in = ([int]$battery.BatteryStatus -eq 2)
        design_capacity_mwh = if ($static) { [long]$static.DesignedCapacity } else { $null }
        full_charge_capacity_mwh = if ($full) { [long]$full.FullChargedCapacity } else { $null }
        cycle_count = if ($cycles) { [long]$cycles.CycleCount } else { $null }
    }
}

Add-Section 'windows_update' {
    $results = (New-Object -ComObject 'Microsoft.Update.AutoUpdate').Results
    $hotfixes = Get-HotFix | Sort-Object -Property InstalledOn -Descending | Select-Object -First 10
    [ordered]@{
        last_search_success = ConvertTo-Utc $results.LastSearchSuccessDate
        last_install_success = ConvertTo-Utc $results.LastInstallationSuccessDate
        service_start_mode = (Get-ServiceRow 'wuauserv').start_mode
        hotfixes = @($hotfixes | ForEach-Object { [ordered]@{ id = [string]$_.HotFixID; installed_on = ConvertTo-Utc $_.InstalledOn } })
    }
}

Add-Section 'event_log' {
    $limit = 5000
    $filter = @{ LogName = 'System', 'Application'; Level = 1, 2; StartTime = (Get-Date).AddHours(-24) }
    $events = @(Get-WinEvent -FilterHashtable $filter -MaxEvents $limit -ErrorAction SilentlyContinue)
    $groups = $events | Group-Object -Property @('LogName', 'ProviderName', 'Id') | Sort-Object -Property Count -Descending | Select-Object -First 200
    [ordered]@{
        window_hours = 24
        read = $events.Count
        limit = $limit
        groups = @($groups | ForEach-Object {
            $latest = $_.Group[0]
            $text = [string]$latest.Message
            [ordered]@{
                log = [string]$latest.LogName
                provider = [string]$latest.ProviderName
                id = [int]$latest.Id
                level = [int]$latest.Level
                count = $_.Count
                last = ConvertTo-Utc $latest.TimeCreated
                message = $text.Substring(0, [Math]::Min($text.Length, 1000))
            }
        })
    }
}

Add-Section 'defender' {
    $properties = @(
        'AMServiceEnabled', 'AntivirusEnabled', 'RealTimeProtectionEnabled', 'IsTamperProtected',
        'AntivirusSignatureAge', 'AntivirusSignatureVersion', 'DefenderSignaturesOutOfDate',
        'QuickScanAge',
        @{ Name = 'AMRunningMode'; Expression = { [string]$_.AMRunningMode } },
        @{ Name = 'AntivirusSignatureLastUpdated'; Expression = { ConvertTo-Utc $_.AntivirusSignatureLastUpdated } }
    )
    Get-MpComputerStatus | Select-Object -Property $properties
}

Add-Section 'bitlocker' {
    $volumes = foreach ($volume in (Get-BitLockerVolume)) {
        [ordered]@{
            mount_point = [string]$volume.MountPoint
            volume_type = [string]$volume.VolumeType
            volume_status = [string]$volume.VolumeStatus
            protection_status = [string]$volume.ProtectionStatus
            encryption_percentage = [double]$volume.EncryptionPercentage
            key_protector_types = @($volume.KeyProtector | ForEach-Object { [string]$_.KeyProtectorType })
        }
    }
    [ordered]@{ volumes = @($volumes) }
}

Add-Section 'printing' {
    $printers = @(Get-Printer)
    $jobs = foreach ($printer in $printers) {
        foreach ($job in @(Get-PrintJob -PrinterName $printer.Name -ErrorAction SilentlyContinue)) {
            [ordered]@{
                printer = [string]$printer.Name
                id = [int]$job.Id
                document = [string]$job.DocumentName
                status = [string]$job.JobStatus
                submitted = ConvertTo-Utc $job.SubmittedTime
                size = [long]$job.Size
                owner = [string]$job.UserName
            }
        }
    }
    [ordered]@{
        spooler = Get-ServiceRow 'Spooler'
        printers = @($printers | ForEach-Object {
            [ordered]@{
                name = [string]$_.Name
                status = [string]$_.PrinterStatus
                port = [string]$_.PortName
                driver = [string]$_.DriverName
                shared = [bool]$_.Shared
            }
        })
        jobs = @($jobs)
    }
}

Add-Section 'time_sync' {
    [ordered]@{
        w32tm = (& w32tm.exe /query /status /verbose | Out-String)
        service_state = (Get-ServiceRow 'W32Time').state
        utc_offset_minutes = [int][TimeZoneInfo]::Local.GetUtcOffset([DateTime]::Now).TotalMinutes
    }
}

Add-Section 'wifi' {
    [ordered]@{ netsh = (& netsh.exe wlan show interfaces | Out-String) }
}

Add-Section 'disk_health' {
    $disks = foreach ($disk in (Get-PhysicalDisk)) {
        $counter = $disk | Get-StorageReliabilityCounter -ErrorAction SilentlyContinue
        [ordered]@{
            name = [string]$disk.FriendlyName
            media_type = [string]$disk.MediaType
            bus_type = [string]$disk.BusType
            health_status = [string]$disk.HealthStatus
            operational_status = @($disk.OperationalStatus | ForEach-Object { [string]$_ })
            size = [long]$disk.Size
            counters = if ($null -eq $counter) { $null } else {
                [ordered]@{
                    temperature = $counter.Temperature
                    wear = $counter.Wear
                    read_errors_uncorrected = $counter.ReadErrorsUncorrected
                    write_errors_uncorrected = $counter.WriteErrorsUncorrected
                    power_on_hours = $counter.PowerOnHours
                }
            }
        }
    }
    [ordered]@{ disks = @($disks) }
}

$document = [ordered]@{
    schema = 'sonde.windows.collect/1'
    collected_at = [DateTime]::UtcNow.ToString('o')
    sections = $sections
    errors = $errors
}
try {
    [Console]::OutputEncoding = [Text.Encoding]::UTF8
} catch {
    $null = $_  # no console (some remote hosts): the host's own encoding is used
}
$document | ConvertTo-Json -Depth 8 -Compress
