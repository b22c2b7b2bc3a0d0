//! Resource counters through the Engine API: the stats stream (`GET /containers/{id}/stats`,
//! one JSON document a second) and the first process's PID, which lets the metrics module
//! read the container's cgroup directly when Berth runs beside the engine.

use bollard::{models::ContainerStatsResponse, query_parameters::StatsOptions};
use futures_util::{Stream, StreamExt};

use super::{bounded, containers::parse_rfc3339_ms, Engine, RuntimeError};
use crate::metrics::reading::Reading;

impl Engine {
    /// The host PID of the container's first process, when it runs.
    ///
    /// # Errors
    /// `Timeout`, `Engine`; `NotFound` when the container does not exist.
    pub async fn container_pid(&self, id: &str) -> Result<Option<u32>, RuntimeError> {
        let c = bounded(self.docker.inspect_container(id, None)).await?;
        Ok(c.state
            .and_then(|s| s.pid)
            .and_then(|pid| u32::try_from(pid).ok())
            .filter(|pid| *pid > 0))
    }

    /// The container's counters, about once a second, until it stops (the stream ends) or
    /// the engine fails (one `Err`, then the end). The first document comes after about two
    /// seconds: the engine waits for a second reading before it sends anything.
    pub fn stats_stream(&self, id: &str) -> impl Stream<Item = Result<Reading, RuntimeError>> {
        let options = StatsOptions {
            stream: true,
            one_shot: false,
        };
        self.docker
            .stats(id, Some(options))
            .map(|r| r.map(|s| reading(&s)).map_err(RuntimeError::from))
    }
}

/// Fills a [`Reading`] from one stats document, as the `docker stats` CLI reads it
/// (`cli/command/container/stats_helpers.go`): memory's inactive cache is
/// `total_inactive_file` on cgroup v1 and `inactive_file` on v2; network sums every
/// interface; block I/O sums the `read`/`write` entries of `io_service_bytes_recursive`.
pub(crate) fn reading(s: &ContainerStatsResponse) -> Reading {
    let cpu = s.cpu_stats.as_ref();
    let memory = s.memory_stats.as_ref();
    let memory_stat = |key: &str| {
        memory
            .and_then(|m| m.stats.as_ref())
            .and_then(|stats| stats.get(key).copied())
    };
    let (net_rx_bytes, net_tx_bytes) = s
        .networks
        .iter()
        .flatten()
        .fold((0, 0), |(rx, tx), (_, n)| {
            (rx + n.rx_bytes.unwrap_or(0), tx + n.tx_bytes.unwrap_or(0))
        });
    let mut block = (0, 0);
    for entry in s
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.as_ref())
        .into_iter()
        .flatten()
    {
        let value = entry.value.unwrap_or(0);
        match entry.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => block.0 += value,
            Some("write") => block.1 += value,
            _ => {}
        }
    }
    Reading {
        at_ms: s
            .read
            .as_deref()
            .and_then(parse_rfc3339_ms)
            .unwrap_or_else(crate::store::now_ms),
        cpu_ns: cpu
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
            .unwrap_or(0),
        system_cpu_ns: cpu.and_then(|c| c.system_cpu_usage).unwrap_or(0),
        online_cpus: cpu
            .and_then(|c| {
                c.online_cpus.or_else(|| {
                    let per_cpu = c.cpu_usage.as_ref()?.percpu_usage.as_ref()?;
                    u32::try_from(per_cpu.len()).ok()
                })
            })
            .unwrap_or(1),
        memory_usage: memory.and_then(|m| m.usage).unwrap_or(0),
        memory_inactive_file: memory_stat("total_inactive_file")
            .or_else(|| memory_stat("inactive_file"))
            .unwrap_or(0),
        memory_limit: memory.and_then(|m| m.limit).unwrap_or(0),
        net_rx_bytes,
        net_tx_bytes,
        block_read_bytes: block.0,
        block_write_bytes: block.1,
        pids: s.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_v1_document_fills_a_reading() {
        // Trimmed from the answer of Docker 20.10 (API 1.41) on cgroup v1.
        let doc = r#"{"read":"2026-11-21T10:00:01.5Z","pids_stats":{"current":3},
            "blkio_stats":{"io_service_bytes_recursive":[
              {"major":8,"minor":0,"op":"Read","value":4096},{"major":8,"minor":0,"op":"Write","value":512},
              {"major":8,"minor":0,"op":"Total","value":4608}]},
            "cpu_stats":{"cpu_usage":{"total_usage":2500000000,"percpu_usage":[1,2]},
              "system_cpu_usage":900000000000},
            "memory_stats":{"usage":10485760,"limit":268435456,
              "stats":{"total_inactive_file":1048576,"inactive_file":7}},
            "networks":{"eth0":{"rx_bytes":100,"tx_bytes":50},"eth1":{"rx_bytes":1,"tx_bytes":2}}}"#;
        let s: ContainerStatsResponse = serde_json::from_str(doc).unwrap();
        let r = reading(&s);
        assert_eq!(r.at_ms, 1_795_255_201_500);
        assert_eq!(
            (r.cpu_ns, r.system_cpu_ns, r.online_cpus),
            (2_500_000_000, 900_000_000_000, 2)
        );
        assert_eq!(
            (r.memory_usage, r.memory_inactive_file, r.memory_limit),
            (10 << 20, 1 << 20, 256 << 20)
        );
        assert_eq!((r.net_rx_bytes, r.net_tx_bytes), (101, 52));
        assert_eq!(
            (r.block_read_bytes, r.block_write_bytes, r.pids),
            (4_096, 512, 3)
        );
    }
}
