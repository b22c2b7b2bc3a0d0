//! Readings straight from the kernel, for containers of the engine beside Berth: the
//! container's cgroup (v1 or v2) for CPU, memory, block I/O and PIDs, and
//! `/proc/<pid>/net/dev` of its first process for the network. This costs a few file reads
//! per container and second instead of a stats stream in dockerd.
//!
//! Files read (kernel documentation `admin-guide/cgroup-v1/*.rst` and `cgroup-v2.rst`):
//!
//! | counter | cgroup v1 | cgroup v2 |
//! | --- | --- | --- |
//! | CPU time | `cpuacct.usage` (ns) | `cpu.stat` `usage_usec` |
//! | memory | `memory.usage_in_bytes`, `memory.limit_in_bytes`, `memory.stat` `total_inactive_file` | `memory.current`, `memory.max`, `memory.stat` `inactive_file` |
//! | block I/O | `blkio.io_service_bytes_recursive` (CFQ/BFQ), else `blkio.throttle.io_service_bytes_recursive` | `io.stat` `rbytes`/`wbytes` |
//! | PIDs | `pids.current` | `pids.current` |
//!
//! The host's CPU time is the `cpu` line of `/proc/stat`, summed over its first seven fields
//! (user … softirq) in clock ticks of 1/100 s (`USER_HZ`), as dockerd computes
//! `system_cpu_usage`; a memory limit above the host's memory is reported as the host's
//! memory, as dockerd does.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};

use super::{
    counter::{Counter, Descriptors},
    reading::Reading,
};

/// `memory.stat` is read at every this many readings of a container (the first one
/// included), and its inactive file cache reused in between. It is the costliest counter file
/// after `net/dev` (about 12 µs kept open, against 0.5 µs for `memory.usage_in_bytes`), and
/// the cache it is read for changes slowly; so a container's memory figure (usage minus
/// inactive file cache, as `docker stats` computes it) is at most 4 s behind a change of its
/// inactive cache, and never behind a change of its usage.
pub const MEMORY_STAT_EVERY: u32 = 5;

/// The kernel's `USER_HZ`: `/proc/stat` counts in 1/100 s on every architecture Docker
/// runs on.
const CLOCK_TICKS_PER_SECOND: u64 = 100;

/// Why a container cannot be read from its cgroup (then the Docker stream is used).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

fn read(path: &Path) -> Result<String, Unreadable> {
    fs::read_to_string(path).map_err(|e| Unreadable(format!("cannot read {}: {e}", path.display())))
}

/// A file holding one number (or `max`, no limit: `u64::MAX`).
fn number(path: &Path, text: &str) -> Result<u64, Unreadable> {
    let text = text.trim();
    if text == "max" {
        return Ok(u64::MAX);
    }
    text.parse()
        .map_err(|_| Unreadable(format!("{} holds '{text}', not a number", path.display())))
}

/// The host-wide figures every container's reading needs, read once per round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// CPU time of every CPU since boot, nanoseconds (dockerd's `system_cpu_usage`).
    pub system_cpu_ns: u64,
    /// `cpuN` lines of `/proc/stat`.
    pub online_cpus: u32,
    /// `MemTotal` of `/proc/meminfo`, bytes.
    pub memory_bytes: u64,
}

impl Host {
    /// Reads `/proc/stat` and `/proc/meminfo`.
    ///
    /// # Errors
    /// Either file missing or not in the kernel's format.
    pub fn read() -> Result<Self, Unreadable> {
        let (system_cpu_ns, online_cpus) = parse_proc_stat(&read(Path::new("/proc/stat"))?)
            .ok_or_else(|| Unreadable("/proc/stat has no 'cpu' line".into()))?;
        let memory_bytes = read(Path::new("/proc/meminfo"))?
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| Unreadable("/proc/meminfo has no MemTotal".into()))?;
        Ok(Self {
            system_cpu_ns,
            online_cpus,
            memory_bytes,
        })
    }
}

/// `(host CPU ns, online CPUs)` from the text of `/proc/stat`.
fn parse_proc_stat(text: &str) -> Option<(u64, u32)> {
    let mut total = None;
    let mut cpus = 0;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let ticks: u64 = fields.take(7).filter_map(|f| f.parse::<u64>().ok()).sum();
                total = Some(ticks * (1_000_000_000 / CLOCK_TICKS_PER_SECOND));
            }
            Some(name) if name.starts_with("cpu") => cpus += 1,
            _ => {}
        }
    }
    Some((total?, cpus))
}

/// One container's counter files, opened once ([`Counter`]).
#[derive(Debug)]
pub struct ContainerFiles {
    /// `/proc/<pid>/net/dev` of the container's first process.
    net_dev: Counter,
    /// `net_dev` listed an interface besides `lo` when the files were opened.
    networked: bool,
    counters: Counters,
    /// The descriptors the counters keep open.
    _descriptors: Descriptors,
    /// Readings taken, to pace `memory.stat` ([`MEMORY_STAT_EVERY`]).
    readings: AtomicU32,
    /// The inactive file cache at the last `memory.stat` reading, bytes.
    inactive_file: AtomicU64,
}

#[derive(Debug)]
enum Counters {
    V1 {
        cpu_usage: Counter,
        memory_usage: Counter,
        memory_limit: Counter,
        memory_stat: Counter,
        /// `blkio.io_service_bytes_recursive`, which only the CFQ/BFQ schedulers have.
        blkio_service: Option<Counter>,
        blkio_throttle: Counter,
        pids: Counter,
    },
    V2 {
        cpu_stat: Counter,
        memory_current: Counter,
        memory_max: Counter,
        memory_stat: Counter,
        io_stat: Counter,
        pids: Counter,
    },
}

/// The cgroup directories of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    V1 {
        cpuacct: PathBuf,
        memory: PathBuf,
        blkio: PathBuf,
        pids: PathBuf,
    },
    V2(PathBuf),
}

impl ContainerFiles {
    /// Finds the cgroup of process `pid` (the container's first process, from inspect)
    /// through `/proc/<pid>/cgroup` and the cgroup mounts in `/proc/self/mountinfo`, and
    /// opens its counter files (kept open while the descriptor budget allows: seven or
    /// eight per container).
    ///
    /// # Errors
    /// The process is not visible (Berth runs in another PID namespace or on another host),
    /// its cgroup is not mounted here, the cgroup's path does not name `container_id` (the
    /// PID was reused by another process), or a counter file cannot be opened.
    pub fn locate(pid: u32, container_id: &str) -> Result<Self, Unreadable> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let cgroups = read(&proc.join("cgroup"))?;
        let mounts = read(Path::new("/proc/self/mountinfo"))?;
        let layout = layout(&cgroups, &mounts).ok_or_else(|| {
            Unreadable(format!("the cgroup of process {pid} is not mounted here"))
        })?;
        let dir = match &layout {
            Layout::V1 { cpuacct, .. } => cpuacct,
            Layout::V2(dir) => dir,
        };
        if !dir.to_string_lossy().contains(container_id) {
            return Err(Unreadable(format!(
                "process {pid} is in {}, not in the cgroup of container {container_id}",
                dir.display()
            )));
        }
        let blkio_service = match &layout {
            Layout::V1 { blkio, .. } => {
                Some(blkio.join("blkio.io_service_bytes_recursive")).filter(|path| path.exists())
            }
            Layout::V2(_) => None,
        };
        let descriptors = Descriptors::take(7 + usize::from(blkio_service.is_some()));
        let keep = descriptors.granted();
        let open = |path: PathBuf| Counter::new(path, keep);
        let net_dev = open(proc.join("net/dev"))?;
        let networked = parse_net_dev(net_dev.read(&mut Vec::new())?).is_some();
        let counters = match layout {
            Layout::V1 {
                cpuacct,
                memory,
                blkio,
                pids,
            } => Counters::V1 {
                cpu_usage: open(cpuacct.join("cpuacct.usage"))?,
                memory_usage: open(memory.join("memory.usage_in_bytes"))?,
                memory_limit: open(memory.join("memory.limit_in_bytes"))?,
                memory_stat: open(memory.join("memory.stat"))?,
                blkio_service: blkio_service.map(open).transpose()?,
                blkio_throttle: open(blkio.join("blkio.throttle.io_service_bytes_recursive"))?,
                pids: open(pids.join("pids.current"))?,
            },
            Layout::V2(dir) => Counters::V2 {
                cpu_stat: open(dir.join("cpu.stat"))?,
                memory_current: open(dir.join("memory.current"))?,
                memory_max: open(dir.join("memory.max"))?,
                memory_stat: open(dir.join("memory.stat"))?,
                io_stat: open(dir.join("io.stat"))?,
                pids: open(dir.join("pids.current"))?,
            },
        };
        Ok(Self {
            net_dev,
            networked,
            counters,
            _descriptors: descriptors,
            readings: AtomicU32::new(0),
            inactive_file: AtomicU64::new(0),
        })
    }

    /// Reads the container's counters now.
    ///
    /// # Errors
    /// A file is missing or empty, or the network namespace lost every interface but `lo`
    /// (the container stopped: a kept `net/dev` then still reads its namespace's `lo`), or a
    /// file is malformed.
    pub fn read(&self, host: &Host, at_ms: i64) -> Result<Reading, Unreadable> {
        let mut scratch = Vec::new();
        let (net_rx_bytes, net_tx_bytes) = match parse_net_dev(self.net_dev.read(&mut scratch)?) {
            Some(counters) => counters,
            None if !self.networked => (0, 0),
            None => {
                return Err(Unreadable(format!(
                    "{} lists no interface but lo any more: the container stopped",
                    self.net_dev.path().display()
                )))
            }
        };
        let mut r = Reading {
            at_ms,
            system_cpu_ns: host.system_cpu_ns,
            online_cpus: host.online_cpus,
            net_rx_bytes,
            net_tx_bytes,
            ..Reading::default()
        };
        let stat_due = self
            .readings
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(MEMORY_STAT_EVERY);
        let inactive_file = |stat: &Counter, key: &str, scratch: &mut Vec<u8>| {
            if !stat_due {
                return Ok(self.inactive_file.load(Ordering::Relaxed));
            }
            let bytes = keyed(stat.read(scratch)?, key);
            self.inactive_file.store(bytes, Ordering::Relaxed);
            Ok::<_, Unreadable>(bytes)
        };
        let mut value = |c: &Counter| number(c.path(), c.read(&mut scratch)?);
        match &self.counters {
            Counters::V1 {
                cpu_usage,
                memory_usage,
                memory_limit,
                memory_stat,
                blkio_service,
                blkio_throttle,
                pids,
            } => {
                r.cpu_ns = value(cpu_usage)?;
                r.memory_usage = value(memory_usage)?;
                r.memory_limit = value(memory_limit)?;
                r.pids = value(pids)?;
                r.memory_inactive_file =
                    inactive_file(memory_stat, "total_inactive_file", &mut scratch)?;
                // The throttle file has the figures when the scheduler's file lists no device.
                let io = blkio_service
                    .as_ref()
                    .and_then(|c| c.read(&mut scratch).ok().and_then(parse_blkio_v1));
                (r.block_read_bytes, r.block_write_bytes) = match io {
                    Some(io) => io,
                    None => parse_blkio_v1(blkio_throttle.read(&mut scratch)?).unwrap_or_default(),
                };
            }
            Counters::V2 {
                cpu_stat,
                memory_current,
                memory_max,
                memory_stat,
                io_stat,
                pids,
            } => {
                r.memory_usage = value(memory_current)?;
                r.memory_limit = value(memory_max)?;
                r.pids = value(pids)?;
                r.cpu_ns = keyed(cpu_stat.read(&mut scratch)?, "usage_usec") * 1000;
                r.memory_inactive_file = inactive_file(memory_stat, "inactive_file", &mut scratch)?;
                (r.block_read_bytes, r.block_write_bytes) =
                    parse_io_stat(io_stat.read(&mut scratch)?);
            }
        }
        r.memory_limit = r.memory_limit.min(host.memory_bytes);
        Ok(r)
    }
}

/// The value of `key` in a `key value` per line file (`memory.stat`, `cpu.stat`); 0 when
/// absent.
fn keyed(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// The container's cgroup directories from `/proc/<pid>/cgroup` and `/proc/self/mountinfo`.
/// cgroup v1 controllers win over the v2 line on hybrid hosts (where v2 has no controllers).
fn layout(cgroups: &str, mountinfo: &str) -> Option<Layout> {
    // (fstype, super options, mount root, mount point) of every cgroup mount.
    let mounts: Vec<(&str, Vec<&str>, &str, &str)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let before: Vec<&str> = before.split(' ').collect();
            let mut after = after.split(' ');
            let fstype = after.next()?;
            let options = after.nth(1)?.split(',').collect();
            Some((fstype, options, *before.get(3)?, *before.get(4)?))
        })
        .filter(|(fstype, ..)| *fstype == "cgroup" || *fstype == "cgroup2")
        .collect();
    let resolve = |root: &str, point: &str, path: &str| -> Option<PathBuf> {
        let relative = if root == "/" {
            path
        } else {
            path.strip_prefix(root)?
        };
        Some(Path::new(point).join(relative.trim_start_matches('/')))
    };
    let v1 = |controller: &str| -> Option<PathBuf> {
        let path = cgroups.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then_some(path)
        })?;
        let (_, _, root, point) = mounts
            .iter()
            .find(|(fstype, options, ..)| *fstype == "cgroup" && options.contains(&controller))?;
        resolve(root, point, path)
    };
    if let (Some(cpuacct), Some(memory), Some(blkio), Some(pids)) =
        (v1("cpuacct"), v1("memory"), v1("blkio"), v1("pids"))
    {
        return Some(Layout::V1 {
            cpuacct,
            memory,
            blkio,
            pids,
        });
    }
    let path = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
    let (_, _, root, point) = mounts.iter().find(|(fstype, ..)| *fstype == "cgroup2")?;
    resolve(root, point, path).map(Layout::V2)
}

/// `(rx bytes, tx bytes)` summed over the interfaces of `/proc/<pid>/net/dev`, loopback
/// excluded (Docker counts the container's endpoints only); `None` when it lists no
/// interface but `lo`.
fn parse_net_dev(text: &str) -> Option<(u64, u64)> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            let mut fields = counters.split_whitespace().map(|f| f.parse::<u64>().ok());
            let rx = fields.next()??;
            let tx = fields.nth(7)??;
            Some((rx, tx))
        })
        .reduce(|(rx, tx), (r, t)| (rx + r, tx + t))
}

/// `(read, write)` bytes of a v1 `blkio.*io_service_bytes_recursive` file (`8:0 Read 4096`
/// per device and operation, then `Total`); `None` when it lists no device (no CFQ
/// scheduler: the throttle file has the figures then).
fn parse_blkio_v1(text: &str) -> Option<(u64, u64)> {
    let mut found = false;
    let mut sums = (0, 0);
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, op, value] = fields[..] else { continue };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        found = true;
        match op.to_ascii_lowercase().as_str() {
            "read" => sums.0 += value,
            "write" => sums.1 += value,
            _ => {}
        }
    }
    found.then_some(sums)
}

/// `(read, write)` bytes of a v2 `io.stat` file (`8:0 rbytes=… wbytes=… …` per device).
fn parse_io_stat(text: &str) -> (u64, u64) {
    let mut sums = (0, 0);
    for field in text.split_whitespace() {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        let value: u64 = value.parse().unwrap_or(0);
        match key {
            "rbytes" => sums.0 += value,
            "wbytes" => sums.1 += value,
            _ => {}
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_gives_host_cpu_time_and_online_cpus() {
        let text = "cpu  100 5 50 1000 10 1 2 7 0 0\ncpu0 50 2 25 500 5 0 1 3 0 0\n\
                    cpu1 50 3 25 500 5 1 1 4 0 0\nintr 12345\nctxt 99\n";
        // 100+5+50+1000+10+1+2 ticks (steal left out, as dockerd does) at 10 ms each.
        assert_eq!(parse_proc_stat(text), Some((1_168 * 10_000_000, 2)));
        assert_eq!(parse_proc_stat("intr 1\n"), None);
    }

    #[test]
    fn v1_controllers_are_found_through_mountinfo() {
        let cgroups = "12:pids:/docker/abc\n4:memory:/docker/abc\n3:blkio:/docker/abc\n\
                       2:cpu,cpuacct:/docker/abc\n0::/\n";
        let mounts = "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
            31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n\
            32 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
            33 25 0:29 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio\n\
            34 25 0:30 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        assert_eq!(
            layout(cgroups, mounts),
            Some(Layout::V1 {
                cpuacct: "/sys/fs/cgroup/cpu,cpuacct/docker/abc".into(),
                memory: "/sys/fs/cgroup/memory/docker/abc".into(),
                blkio: "/sys/fs/cgroup/blkio/docker/abc".into(),
                pids: "/sys/fs/cgroup/pids/docker/abc".into(),
            })
        );
    }

    #[test]
    fn v2_uses_the_unified_mount_and_its_root() {
        let cgroups = "0::/system.slice/docker-abc.scope\n";
        let mounts = "29 23 0:25 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            layout(cgroups, mounts),
            Some(Layout::V2(
                "/sys/fs/cgroup/system.slice/docker-abc.scope".into()
            ))
        );
        // A mount of a sub-tree (as inside a container): paths are relative to its root.
        let nested = "29 23 0:25 /system.slice /mnt/cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            layout(cgroups, nested),
            Some(Layout::V2("/mnt/cg/docker-abc.scope".into()))
        );
        // A cgroup outside the mounted sub-tree cannot be read.
        let elsewhere = "29 23 0:25 /user.slice /mnt/cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(layout(cgroups, elsewhere), None);
    }

    #[test]
    fn network_sums_interfaces_but_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
            face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
            lo:  9999      10    0    0    0     0          0         0     9999      10    0    0    0     0       0          0\n  \
            eth0:  1500      12    0    0    0     0          0         0      700       6    0    0    0     0       0          0\n  \
            eth1:   500       2    0    0    0     0          0         0      300       1    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(text), Some((2_000, 1_000)));
        // Only loopback: a container without a network, or one that stopped.
        let lo_only: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert_eq!(parse_net_dev(&lo_only), None);
    }

    #[test]
    fn block_io_in_both_formats() {
        let v1 = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 1\n8:0 Total 12288\n\
                  8:16 Read 1\n8:16 Write 2\nTotal 12291\n";
        assert_eq!(parse_blkio_v1(v1), Some((4_097, 8_194)));
        assert_eq!(parse_blkio_v1("Total 0\n"), None);
        let v2 = "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
                  8:16 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n";
        assert_eq!(parse_io_stat(v2), (4_097, 8_194));
    }

    #[test]
    fn keyed_files() {
        let stat = "cache 10\ntotal_inactive_file 4096\ninactive_file 5\n";
        assert_eq!(keyed(stat, "total_inactive_file"), 4_096);
        assert_eq!(keyed(stat, "inactive_file"), 5);
        assert_eq!(keyed(stat, "missing"), 0);
    }
}
