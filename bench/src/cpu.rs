//! CPU time the benchmark's processes spend in a scenario. When the load
//! generator, the gateway and the broker share the machine's cores, a
//! scenario that keeps them all busy is bound by the CPU time one event
//! costs across the three; the ratio of those costs is the highest rate
//! ratio the slower path can reach on that machine.

use std::ops::Sub;

/// Ticks per second of the times in `/proc/<pid>/stat` (`USER_HZ`, fixed
/// at 100 by the Linux ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// The processes whose CPU time the benchmark counts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Processes {
    pub(crate) gateway: u32,
    /// The broker the benchmark started; unknown for an external one.
    pub(crate) broker: Option<u32>,
}

/// CPU seconds (user and system, every thread) per process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuTime {
    /// The load generator (this process): its gRPC clients and its direct
    /// librdkafka clients.
    pub(crate) client: f64,
    pub(crate) gateway: f64,
    /// NaN for an external broker.
    pub(crate) broker: f64,
}

impl Processes {
    /// The CPU time each process has used so far.
    pub(crate) fn now(&self) -> CpuTime {
        CpuTime {
            client: cpu_seconds(std::process::id()),
            gateway: cpu_seconds(self.gateway),
            broker: self.broker.map_or(f64::NAN, cpu_seconds),
        }
    }
}

impl CpuTime {
    pub(crate) fn total(&self) -> f64 {
        self.client + self.gateway + self.broker
    }

    /// Microseconds per event of each process, and of all three.
    pub(crate) fn per_event_us(&self, events: u64) -> [f64; 4] {
        let us = |seconds: f64| seconds * 1e6 / events as f64;
        [
            us(self.client),
            us(self.gateway),
            us(self.broker),
            us(self.total()),
        ]
    }
}

impl Sub for CpuTime {
    type Output = Self;

    fn sub(self, earlier: Self) -> Self {
        Self {
            client: self.client - earlier.client,
            gateway: self.gateway - earlier.gateway,
            broker: self.broker - earlier.broker,
        }
    }
}

/// User plus system time of process `pid` so far, in seconds; NaN when it
/// cannot be read (no procfs, or the process is gone).
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parse_stat(&stat))
        .unwrap_or(f64::NAN)
}

/// utime and stime are the 14th and 15th fields; the 2nd (the command name,
/// in parentheses) may contain spaces, so counting starts after its ')'.
fn parse_stat(stat: &str) -> Option<f64> {
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th from here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// The peak resident memory of process `pid` (VmHWM), in MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> f64 {
    memory_mib(pid, "VmHWM:")
}

/// The process's resident memory now, MiB.
pub(crate) fn rss_mib(pid: u32) -> f64 {
    memory_mib(pid, "VmRSS:")
}

/// A memory figure of `/proc/<pid>/status` (given in kB), in MiB.
fn memory_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_time_after_a_name_with_spaces() {
        let stat = "4242 (tokio rt) worker) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 75 0 0 20 0 9";
        assert_eq!(parse_stat(stat), Some(3.25));
    }

    #[test]
    fn counts_the_time_this_process_spins() {
        let before = cpu_seconds(std::process::id());
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut spin = 0u64;
        while cpu_seconds(std::process::id()) <= before {
            assert!(
                std::time::Instant::now() < give_up,
                "30 s of spinning never showed in /proc"
            );
            for _ in 0..100_000 {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
        }
    }

    #[test]
    fn a_missing_process_reads_as_nan() {
        assert!(cpu_seconds(u32::MAX).is_nan());
    }
}
