//! Raw readings of a container's counters and the sample computed from two of them.
//!
//! Both sources (the Docker stats stream and the cgroup files read beside the engine) fill
//! the same [`Reading`]; [`sample`] is the one place where the formulas live. They are the
//! ones of the Docker CLI's `docker stats` (`cli/command/container/stats_helpers.go`):
//!
//! - CPU % = (container CPU time delta / host CPU time delta) × online CPUs × 100, where the
//!   host CPU time is the `cpu` line of `/proc/stat` (all states, in nanoseconds): percent of
//!   one core, up to 100 × cores.
//! - memory used = usage − inactive file cache (`total_inactive_file` on cgroup v1,
//!   `inactive_file` on v2) when the cache is smaller than the usage.
//! - network = sum over the container's interfaces; block I/O = sum of the `read` and
//!   `write` entries over devices.

use app::model::{DeploymentId, InstanceId, MetricsSample};

/// Cumulative counters of one container at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reading {
    /// When it was read, Unix epoch milliseconds.
    pub at_ms: i64,
    /// CPU time the container used since it started, nanoseconds.
    pub cpu_ns: u64,
    /// CPU time of the whole host (every CPU, every state) since boot, nanoseconds.
    pub system_cpu_ns: u64,
    /// CPUs online on the host.
    pub online_cpus: u32,
    /// Memory usage including page cache, bytes.
    pub memory_usage: u64,
    /// Inactive file-backed page cache within `memory_usage`, bytes.
    pub memory_inactive_file: u64,
    /// Memory limit, bytes.
    pub memory_limit: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub block_read_bytes: u64,
    pub block_write_bytes: u64,
    pub pids: u64,
}

/// Which instance a reading is of and what its plan allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub instance_id: InstanceId,
    pub deployment_id: DeploymentId,
    /// The plan's CPU in thousandths of a core; 0 when unlimited.
    pub cpu_millicores: i64,
}

/// The sample for the interval `prev` → `cur` of the same container.
///
/// A counter that went backwards (the container restarted between the readings) gives a
/// rate of 0 rather than a negative or huge one.
pub fn sample(subject: &Subject, prev: &Reading, cur: &Reading) -> MetricsSample {
    let cpu_delta = cur.cpu_ns.saturating_sub(prev.cpu_ns) as f64;
    let system_delta = cur.system_cpu_ns.saturating_sub(prev.system_cpu_ns) as f64;
    let cpus = f64::from(cur.online_cpus.max(1));
    let cpu_percent = if system_delta > 0.0 {
        (cpu_delta / system_delta * cpus * 100.0).clamp(0.0, cpus * 100.0)
    } else {
        0.0
    };
    let cpu_percent_of_plan =
        (subject.cpu_millicores > 0).then(|| cpu_percent * 1000.0 / subject.cpu_millicores as f64);
    let seconds = (cur.at_ms - prev.at_ms) as f64 / 1000.0;
    let rate = |now: u64, before: u64| {
        if seconds > 0.0 {
            now.saturating_sub(before) as f64 / seconds
        } else {
            0.0
        }
    };
    let memory_bytes = if cur.memory_inactive_file < cur.memory_usage {
        cur.memory_usage - cur.memory_inactive_file
    } else {
        cur.memory_usage
    };
    MetricsSample {
        instance_id: subject.instance_id.clone(),
        deployment_id: subject.deployment_id.clone(),
        at_ms: cur.at_ms,
        interval_ms: cur.at_ms - prev.at_ms,
        cpu_percent,
        cpu_percent_of_plan,
        memory_bytes,
        memory_limit_bytes: cur.memory_limit,
        net_rx_bytes: cur.net_rx_bytes,
        net_tx_bytes: cur.net_tx_bytes,
        net_rx_bytes_per_s: rate(cur.net_rx_bytes, prev.net_rx_bytes),
        net_tx_bytes_per_s: rate(cur.net_tx_bytes, prev.net_tx_bytes),
        block_read_bytes: cur.block_read_bytes,
        block_write_bytes: cur.block_write_bytes,
        block_read_bytes_per_s: rate(cur.block_read_bytes, prev.block_read_bytes),
        block_write_bytes_per_s: rate(cur.block_write_bytes, prev.block_write_bytes),
        pids: cur.pids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(millicores: i64) -> Subject {
        Subject {
            instance_id: InstanceId("i".into()),
            deployment_id: DeploymentId("d".into()),
            cpu_millicores: millicores,
        }
    }

    #[test]
    fn cpu_is_percent_of_one_core_as_docker_stats_computes_it() {
        // One second on a 2-CPU host: the host spent 2 s of CPU time, the container 0.75 s.
        let prev = Reading {
            at_ms: 1_000,
            cpu_ns: 5_000_000_000,
            system_cpu_ns: 100_000_000_000,
            online_cpus: 2,
            ..Reading::default()
        };
        let cur = Reading {
            at_ms: 2_000,
            cpu_ns: 5_750_000_000,
            system_cpu_ns: 102_000_000_000,
            online_cpus: 2,
            ..Reading::default()
        };
        let s = sample(&subject(500), &prev, &cur);
        assert!((s.cpu_percent - 75.0).abs() < 1e-9, "{}", s.cpu_percent);
        // Half a core allowed: 0.75 cores is 150 % of the plan.
        assert!((s.cpu_percent_of_plan.unwrap() - 150.0).abs() < 1e-9);
        assert_eq!(sample(&subject(0), &prev, &cur).cpu_percent_of_plan, None);
    }

    #[test]
    fn memory_excludes_inactive_cache_and_rates_are_per_second() {
        let prev = Reading {
            at_ms: 10_000,
            net_rx_bytes: 1_000,
            block_write_bytes: 4_096,
            ..Reading::default()
        };
        let cur = Reading {
            at_ms: 12_000,
            memory_usage: 100 << 20,
            memory_inactive_file: 30 << 20,
            memory_limit: 256 << 20,
            net_rx_bytes: 5_000,
            block_write_bytes: 8_192,
            pids: 3,
            ..Reading::default()
        };
        let s = sample(&subject(0), &prev, &cur);
        assert_eq!(s.memory_bytes, 70 << 20);
        assert_eq!(s.memory_limit_bytes, 256 << 20);
        assert!((s.net_rx_bytes_per_s - 2_000.0).abs() < 1e-9);
        assert!((s.block_write_bytes_per_s - 2_048.0).abs() < 1e-9);
        assert_eq!((s.net_rx_bytes, s.pids), (5_000, 3));
    }

    #[test]
    fn counters_that_went_backwards_give_zero_rates() {
        let prev = Reading {
            at_ms: 0,
            cpu_ns: 9_000,
            system_cpu_ns: 10,
            net_tx_bytes: 9_999,
            ..Reading::default()
        };
        let cur = Reading {
            at_ms: 1_000,
            cpu_ns: 10,
            system_cpu_ns: 20,
            net_tx_bytes: 10,
            memory_usage: 5,
            memory_inactive_file: 50,
            ..Reading::default()
        };
        let s = sample(&subject(1000), &prev, &cur);
        assert_eq!((s.cpu_percent, s.net_tx_bytes_per_s), (0.0, 0.0));
        assert_eq!(s.memory_bytes, 5);
    }
}
