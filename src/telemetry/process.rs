//! The process metrics every Prometheus client exports (`process_cpu_seconds_total` and the like),
//! read from `/proc/self` when `/metrics` is scraped.
//!
//! The names, units and sources are those of the Prometheus client libraries (`prometheus/procfs`),
//! so that the usual dashboards and alerts work unchanged. Elsewhere than on Linux there is no
//! `/proc`, and these series are simply absent.

use std::fs;

/// Counter: user and system CPU time, seconds.
pub(crate) const CPU_SECONDS: &str = "process_cpu_seconds_total";
/// Gauge: resident memory, bytes.
pub(crate) const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
/// Gauge: virtual memory, bytes.
pub(crate) const VIRTUAL_MEMORY: &str = "process_virtual_memory_bytes";
/// Gauge: open file descriptors (sockets included).
pub(crate) const OPEN_FDS: &str = "process_open_fds";
/// Gauge: the soft limit on open file descriptors.
pub(crate) const MAX_FDS: &str = "process_max_fds";
/// Gauge: when the process started, Unix seconds.
pub(crate) const START_TIME: &str = "process_start_time_seconds";

/// The kernel reports times in `/proc` in USER_HZ ticks, which is 100 on every architecture Linux
/// runs hookgate on; `prometheus/procfs` relies on the same constant (`userHZ`).
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc/self` says about the process; each field is `None` if it could not be read.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) resident_bytes: Option<f64>,
    pub(crate) virtual_bytes: Option<f64>,
    pub(crate) open_fds: Option<f64>,
    pub(crate) max_fds: Option<f64>,
    pub(crate) start_time_seconds: Option<f64>,
}

impl Sample {
    /// Reads the current process's figures. Only `/proc` reads: no disk, a few microseconds.
    pub(crate) fn read() -> Self {
        let stat = fs::read_to_string("/proc/self/stat").ok();
        let stat = stat.as_deref().and_then(StatFields::parse);
        let status = fs::read_to_string("/proc/self/status").ok();
        let boot_time = fs::read_to_string("/proc/stat").ok().and_then(|s| boot_time(&s));
        Self {
            cpu_seconds: stat.map(|s| (s.utime + s.stime) as f64 / TICKS_PER_SECOND),
            resident_bytes: status.as_deref().and_then(|s| status_kib(s, "VmRSS:")),
            virtual_bytes: status.as_deref().and_then(|s| status_kib(s, "VmSize:")),
            open_fds: fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as f64),
            max_fds: fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|s| max_open_files(&s)),
            start_time_seconds: match (stat, boot_time) {
                (Some(s), Some(boot)) => Some(boot as f64 + s.starttime as f64 / TICKS_PER_SECOND),
                _ => None,
            },
        }
    }

    /// Appends the sample to `out` in the Prometheus text format, with HELP and TYPE lines.
    ///
    /// Written here rather than through the `metrics` recorder, whose counters count whole units: CPU
    /// time is a counter of fractional seconds.
    pub(crate) fn render_into(&self, out: &mut String) {
        use std::fmt::Write as _;
        let series = [
            (
                CPU_SECONDS,
                "counter",
                "Total user and system CPU time spent, in seconds.",
                self.cpu_seconds,
            ),
            (
                RESIDENT_MEMORY,
                "gauge",
                "Resident memory size, in bytes.",
                self.resident_bytes,
            ),
            (
                VIRTUAL_MEMORY,
                "gauge",
                "Virtual memory size, in bytes.",
                self.virtual_bytes,
            ),
            (
                OPEN_FDS,
                "gauge",
                "Number of open file descriptors.",
                self.open_fds,
            ),
            (
                MAX_FDS,
                "gauge",
                "Maximum number of open file descriptors (soft limit).",
                self.max_fds,
            ),
            (
                START_TIME,
                "gauge",
                "Start time of the process since the Unix epoch, in seconds.",
                self.start_time_seconds,
            ),
        ];
        for (name, kind, help, value) in series {
            if let Some(value) = value {
                // Writing to a String cannot fail.
                let _ = write!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
                );
            }
        }
    }
}

/// The fields of `/proc/self/stat` used here, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatFields {
    utime: u64,
    stime: u64,
    starttime: u64,
}

impl StatFields {
    /// Parses `/proc/<pid>/stat` (proc(5)): the command name, in parentheses, may hold spaces and
    /// parentheses, so the fields are counted from the last `)`.
    fn parse(text: &str) -> Option<Self> {
        let (_, rest) = text.rsplit_once(')')?;
        // `rest` starts at field 3 (state): field n is at index n - 3.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
        })
    }
}

/// The boot time, Unix seconds, from `/proc/stat`'s `btime` line.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `/proc/self/status` line such as `VmRSS:     1234 kB`, in bytes.
fn status_kib(status: &str, key: &str) -> Option<f64> {
    let line = status.lines().find_map(|l| l.strip_prefix(key))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kib as f64 * 1024.0)
}

/// The soft limit of `Max open files` in `/proc/self/limits`; `None` if unlimited.
fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()
        .map(|n| n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with spaces and a parenthesis, as a thread may name itself.
        let stat = "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 \
                    123456 1000000 2000 18446744073709551615 1 1 0 0 0 0 0 4096 17663 0 0 0 17 1 0 0";
        assert_eq!(
            StatFields::parse(stat),
            Some(StatFields {
                utime: 250,
                stime: 75,
                starttime: 123456
            })
        );
        assert_eq!(StatFields::parse("4242 (truncated"), None);
    }

    #[test]
    fn status_limits_and_boot_time_parse() {
        let status = "Name:\thookgate\nVmSize:\t  204800 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(10240.0 * 1024.0));
        assert_eq!(status_kib(status, "VmSize:"), Some(204800.0 * 1024.0));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        let unlimited = "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1764000000\nprocesses 9\n"),
            Some(1_764_000_000)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_as_running_with_memory_and_open_files() {
        let s = Sample::read();
        assert!(s.resident_bytes.is_some_and(|b| b > 0.0), "{s:?}");
        assert!(s.virtual_bytes.is_some_and(|b| b > 0.0), "{s:?}");
        // stdin, stdout and stderr at least.
        assert!(s.open_fds.is_some_and(|n| n >= 3.0), "{s:?}");
        assert!(s.cpu_seconds.is_some(), "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        let started = s.start_time_seconds.expect("start time");
        // Started before now, and within the last day (a test process).
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
    }
}
