//! Placement: which nodes the instances of a deployment go to. Pure logic over a snapshot of
//! nodes and their allocations, so it is unit-tested without an engine.
//!
//! Rules, in order:
//! 1. Only `active` nodes below their `max_instances` whose total capacity can hold one
//!    instance of the plan are eligible; with the `resource-based` strategy the plan's CPU and
//!    memory must also fit in the node's capacity minus what is already reserved there (the
//!    other strategies allow overcommit, as `docker run` does).
//! 2. All instances of a deployment stay in one region: the one it already runs in, else the
//!    first region (by name) that can take all of them. The region's strategy orders nodes.
//! 3. Replicas spread: a node with fewer instances of this deployment always wins; the
//!    strategy breaks ties: `least-loaded` (fewest instances, then lowest CPU reservation),
//!    `round-robin` (next node after the last one chosen in the region), `resource-based`
//!    (most free memory/CPU left after placing, the smaller of the two fractions).

use std::collections::BTreeMap;

/// A region's placement strategy (`regions.placement_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    LeastLoaded,
    RoundRobin,
    ResourceBased,
}

impl Strategy {
    /// Parses `least-loaded`, `round-robin`, `resource-based`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "least-loaded" => Some(Self::LeastLoaded),
            "round-robin" => Some(Self::RoundRobin),
            "resource-based" => Some(Self::ResourceBased),
            _ => None,
        }
    }
}

/// A node as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node_id: String,
    pub node_name: String,
    pub region: String,
    pub strategy: Strategy,
    /// `active`, `draining` or `down`.
    pub state: String,
    pub cpu_millicores: i64,
    pub memory_bytes: i64,
    pub max_instances: i64,
    /// Instances already on the node (all deployments).
    pub instances: i64,
    pub cpu_allocated: i64,
    pub memory_allocated: i64,
    /// Instances of the deployment being placed already on the node.
    pub of_deployment: i64,
}

/// What one instance needs (the plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    pub plan_name: String,
    pub cpu_millicores: i64,
    pub memory_bytes: i64,
}

/// Nothing fits; the message names every node and why it was passed over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlacementError(pub String);

fn cores(millicores: i64) -> String {
    format!("{:.2} cores", millicores as f64 / 1000.0)
}

fn mib(bytes: i64) -> String {
    format!("{} MiB", bytes / (1 << 20))
}

impl Candidate {
    /// Why the node cannot take one more instance of `demand`, or `None` when it can.
    fn refusal(&self, demand: &Demand) -> Option<String> {
        if self.state != "active" {
            return Some(format!("node '{}' is {}", self.node_name, self.state));
        }
        if self.instances >= self.max_instances {
            return Some(format!(
                "node '{}' is full ({}/{} instances)",
                self.node_name, self.instances, self.max_instances
            ));
        }
        if demand.cpu_millicores > self.cpu_millicores || demand.memory_bytes > self.memory_bytes {
            return Some(format!(
                "node '{}' has only {} and {} in all",
                self.node_name,
                cores(self.cpu_millicores),
                mib(self.memory_bytes)
            ));
        }
        if self.strategy == Strategy::ResourceBased {
            let cpu_free = self.cpu_millicores - self.cpu_allocated;
            let mem_free = self.memory_bytes - self.memory_allocated;
            if cpu_free < demand.cpu_millicores || mem_free < demand.memory_bytes {
                return Some(format!(
                    "node '{}' has {} and {} free",
                    self.node_name,
                    cores(cpu_free.max(0)),
                    mib(mem_free.max(0))
                ));
            }
        }
        None
    }

    fn free_fraction_after(&self, demand: &Demand) -> f64 {
        let frac = |cap: i64, used: i64, want: i64| {
            if cap <= 0 {
                0.0
            } else {
                (cap - used - want) as f64 / cap as f64
            }
        };
        frac(
            self.cpu_millicores,
            self.cpu_allocated,
            demand.cpu_millicores,
        )
        .min(frac(
            self.memory_bytes,
            self.memory_allocated,
            demand.memory_bytes,
        ))
    }

    fn take(&mut self, demand: &Demand) {
        self.instances += 1;
        self.of_deployment += 1;
        self.cpu_allocated += demand.cpu_millicores;
        self.memory_allocated += demand.memory_bytes;
    }
}

/// Round-robin positions per region, kept by the caller between placements.
pub type Cursors = BTreeMap<String, usize>;

/// Chooses a node for each of `count` new instances. Returns node ids in placement order.
///
/// # Errors
/// `PlacementError` naming the plan's needs and each node's reason when some instance fits
/// nowhere (nothing is placed then).
pub fn place(
    candidates: &[Candidate],
    demand: &Demand,
    count: usize,
    cursors: &mut Cursors,
) -> Result<Vec<String>, PlacementError> {
    if candidates.is_empty() {
        return Err(PlacementError(
            "No node is registered; an administrator must add one.".into(),
        ));
    }
    let mut regions: Vec<&str> = candidates.iter().map(|c| c.region.as_str()).collect();
    regions.sort_unstable();
    regions.dedup();
    if let Some(home) = candidates.iter().find(|c| c.of_deployment > 0) {
        regions.retain(|r| *r == home.region);
    }
    let mut last_error = None;
    for region in regions {
        let mut nodes: Vec<Candidate> = candidates
            .iter()
            .filter(|c| c.region == region)
            .cloned()
            .collect();
        nodes.sort_by(|a, b| a.node_name.cmp(&b.node_name));
        let mut cursor = cursors.get(region).copied().unwrap_or(0);
        match place_in_region(&mut nodes, demand, count, &mut cursor) {
            Ok(chosen) => {
                cursors.insert(region.to_owned(), cursor);
                return Ok(chosen);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| PlacementError("No region can take the deployment.".into())))
}

fn place_in_region(
    nodes: &mut [Candidate],
    demand: &Demand,
    count: usize,
    cursor: &mut usize,
) -> Result<Vec<String>, PlacementError> {
    let mut chosen = Vec::with_capacity(count);
    for _ in 0..count {
        let eligible: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].refusal(demand).is_none())
            .collect();
        if eligible.is_empty() {
            let reasons: Vec<String> = nodes.iter().filter_map(|n| n.refusal(demand)).collect();
            return Err(PlacementError(format!(
                "No node can take an instance of plan '{}' ({}, {}): {}.",
                demand.plan_name,
                cores(demand.cpu_millicores),
                mib(demand.memory_bytes),
                reasons.join("; ")
            )));
        }
        let fewest = eligible
            .iter()
            .map(|&i| nodes[i].of_deployment)
            .min()
            .unwrap_or(0);
        let spread: Vec<usize> = eligible
            .into_iter()
            .filter(|&i| nodes[i].of_deployment == fewest)
            .collect();
        let pick = match nodes[spread[0]].strategy {
            Strategy::LeastLoaded => *spread
                .iter()
                .min_by_key(|&&i| (nodes[i].instances, nodes[i].cpu_allocated))
                .unwrap_or(&spread[0]),
            Strategy::ResourceBased => *spread
                .iter()
                .max_by(|&&a, &&b| {
                    nodes[a]
                        .free_fraction_after(demand)
                        .total_cmp(&nodes[b].free_fraction_after(demand))
                        .then(b.cmp(&a))
                })
                .unwrap_or(&spread[0]),
            Strategy::RoundRobin => {
                let n = nodes.len();
                let next = (0..n)
                    .map(|k| (*cursor + k) % n)
                    .find(|i| spread.contains(i))
                    .unwrap_or(spread[0]);
                *cursor = (next + 1) % n;
                next
            }
        };
        nodes[pick].take(demand);
        chosen.push(nodes[pick].node_id.clone());
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, strategy: Strategy) -> Candidate {
        Candidate {
            node_id: format!("id-{name}"),
            node_name: name.into(),
            region: "default".into(),
            strategy,
            state: "active".into(),
            cpu_millicores: 4000,
            memory_bytes: 8 << 30,
            max_instances: 10,
            instances: 0,
            cpu_allocated: 0,
            memory_allocated: 0,
            of_deployment: 0,
        }
    }

    fn small() -> Demand {
        Demand {
            plan_name: "small".into(),
            cpu_millicores: 1000,
            memory_bytes: 1 << 30,
        }
    }

    #[test]
    fn replicas_spread_across_nodes() {
        for strategy in [
            Strategy::LeastLoaded,
            Strategy::RoundRobin,
            Strategy::ResourceBased,
        ] {
            let nodes = [
                node("a", strategy),
                node("b", strategy),
                node("c", strategy),
            ];
            let chosen = place(&nodes, &small(), 3, &mut Cursors::new()).unwrap();
            let mut sorted = chosen.clone();
            sorted.sort();
            assert_eq!(sorted, ["id-a", "id-b", "id-c"], "{strategy:?}");
        }
    }

    #[test]
    fn least_loaded_prefers_the_emptiest_node() {
        let mut a = node("a", Strategy::LeastLoaded);
        a.instances = 5;
        let b = node("b", Strategy::LeastLoaded);
        assert_eq!(
            place(&[a, b], &small(), 1, &mut Cursors::new()).unwrap(),
            ["id-b"]
        );
    }

    #[test]
    fn round_robin_rotates_between_placements() {
        let nodes = [
            node("a", Strategy::RoundRobin),
            node("b", Strategy::RoundRobin),
        ];
        let mut cursors = Cursors::new();
        let first = place(&nodes, &small(), 1, &mut cursors).unwrap();
        let second = place(&nodes, &small(), 1, &mut cursors).unwrap();
        let third = place(&nodes, &small(), 1, &mut cursors).unwrap();
        assert_eq!((first[0].as_str(), second[0].as_str()), ("id-a", "id-b"));
        assert_eq!(third, first);
    }

    #[test]
    fn resource_based_checks_fit_and_names_the_constraint() {
        let mut a = node("a", Strategy::ResourceBased);
        a.memory_allocated = (8 << 30) - (512 << 20);
        let mut b = node("b", Strategy::ResourceBased);
        b.state = "draining".into();
        let mut c = node("c", Strategy::ResourceBased);
        c.instances = 10;
        let e = place(&[a.clone(), b, c], &small(), 1, &mut Cursors::new()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("plan 'small' (1.00 cores, 1024 MiB)"), "{msg}");
        assert!(
            msg.contains("node 'a' has 4.00 cores and 512 MiB free"),
            "{msg}"
        );
        assert!(msg.contains("node 'b' is draining"), "{msg}");
        assert!(msg.contains("node 'c' is full (10/10 instances)"), "{msg}");
        // The same node under least-loaded overcommits memory rather than refuse.
        a.strategy = Strategy::LeastLoaded;
        assert_eq!(
            place(&[a], &small(), 1, &mut Cursors::new()).unwrap(),
            ["id-a"]
        );
    }

    #[test]
    fn resource_based_fills_by_free_capacity_and_stops_when_full() {
        let a = node("a", Strategy::ResourceBased);
        let mut b = node("b", Strategy::ResourceBased);
        b.cpu_allocated = 2000;
        // Two fit on a (4 cores), one more on b, then b is out of CPU.
        let chosen = place(&[a.clone(), b.clone()], &small(), 4, &mut Cursors::new()).unwrap();
        assert_eq!(chosen.iter().filter(|n| *n == "id-a").count(), 2);
        assert!(place(&[a, b], &small(), 7, &mut Cursors::new()).is_err());
    }

    #[test]
    fn a_deployment_stays_in_its_region_and_no_node_is_an_error() {
        let mut a = node("a", Strategy::LeastLoaded);
        a.region = "eu".into();
        a.of_deployment = 1;
        let mut b = node("b", Strategy::LeastLoaded);
        b.region = "us".into();
        assert_eq!(
            place(&[a, b], &small(), 2, &mut Cursors::new()).unwrap(),
            ["id-a", "id-a"]
        );
        assert!(place(&[], &small(), 1, &mut Cursors::new())
            .unwrap_err()
            .to_string()
            .contains("No node is registered"));
    }
}
