"""Every threshold the checks use, in one place, each with the reason for its value."""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
DAY_S = 86400


@dataclass(frozen=True)
class Thresholds:
    # disk.space: used share of any writable partition.
    disk_used_warning_percent: float = 90.0
    disk_used_critical_percent: float = 95.0
    # disk.space on the system drive: Windows needs room for updates and its page file.
    system_disk_free_warning_bytes: int = 10 * GIB
    system_disk_free_critical_bytes: int = 2 * GIB
    # disk.inodes: a full inode table refuses new files even with free space.
    inodes_used_warning_percent: float = 90.0
    inodes_used_critical_percent: float = 95.0
    # memory.pressure: memory no program can get without something being swapped out.
    memory_used_warning_percent: float = 90.0
    memory_used_critical_percent: float = 95.0
    swap_used_warning_percent: float = 80.0  # heavy swapping is what makes a PC "slow"
    # cpu.saturation: load per logical core (sustained) AND usage in the sample (still now).
    cpu_load_per_core_warning: float = 1.0  # 5-minute load average
    cpu_load_per_core_critical: float = 1.5  # 15-minute load average
    cpu_usage_warning_percent: float = 80.0
    cpu_usage_critical_percent: float = 95.0
    # cpu.temperature: used when the sensor gives no high/critical mark of its own.
    cpu_temperature_warning_celsius: float = 85.0
    cpu_temperature_critical_celsius: float = 95.0
    # battery.wear: lost share of design capacity; 40 % is the usual "replace" advice.
    battery_wear_warning_percent: float = 40.0
    battery_wear_critical_percent: float = 60.0
    # services.failed: one failed service is a warning, this many a critical state.
    failed_services_critical_count: int = 5
    # network.dns: the slowest name resolution.
    dns_slow_warning_ms: float = 500.0
    # network.server / network.target: TCP connect time (resolution apart).
    connect_slow_warning_ms: float = 300.0
    # system.uptime: many problems go away after a restart users never do.
    uptime_warning_s: int = 14 * DAY_S
    uptime_critical_s: int = 30 * DAY_S
    # system.clock_skew: Kerberos (Windows domain sign-in) refuses beyond 5 minutes.
    clock_skew_warning_s: float = 60.0
    clock_skew_critical_s: float = 300.0
    # windows.defender: signature age; Defender takes new signatures several times a day,
    # so three days means its updates fail, and two weeks leaves new threats undetected.
    defender_signature_warning_days: int = 3
    defender_signature_critical_days: int = 14
    # windows.update: days since Windows Update last installed; updates come monthly.
    update_install_warning_days: int = 35
    update_install_critical_days: int = 60
    # events.errors: critical and error events in System and Application over 24 hours.
    event_errors_warning_count: int = 50
    event_errors_critical_count: int = 500
    # events.errors: unexpected restarts (Kernel-Power 41, BugCheck 1001, EventLog 6008).
    event_crashes_critical_count: int = 2
    # print.stuck_jobs: a job in error, or waiting this long, is stuck.
    print_job_stuck_minutes: int = 30
    print_stuck_jobs_critical_count: int = 10
    # time.sync: w32tm syncs at least weekly out of a domain, hourly or so in one.
    time_sync_warning_days: float = 8.0
    time_sync_critical_days: float = 30.0
    # disk.health: an SSD's used share of its rated endurance (reliability counter Wear).
    disk_wear_warning_percent: int = 80
    disk_wear_critical_percent: int = 95
    # wifi.signal: Windows' signal quality; below 40 % calls drop and pages stall.
    wifi_signal_warning_percent: int = 40
    wifi_signal_critical_percent: int = 20
