//! Per-instance state the balancer keeps across route-table rebuilds: requests in flight
//! (for least-connections) and instances ejected after refusing a connection.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Instant,
};

use super::EJECT_FOR;

/// Instance state by address.
#[derive(Default)]
pub(super) struct BackendState {
    ejected: Mutex<HashMap<SocketAddr, Instant>>,
    in_flight: RwLock<HashMap<SocketAddr, Arc<AtomicUsize>>>,
}

/// One request in flight to an instance; dropping it ends the count.
pub(super) struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BackendState {
    /// Requests in flight to `backend` (for least-connections).
    pub(super) fn in_flight(&self, backend: SocketAddr) -> usize {
        self.in_flight
            .read()
            .expect("in-flight lock")
            .get(&backend)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// Counts a request to `backend` as in flight until the guard is dropped.
    pub(super) fn start_request(&self, backend: SocketAddr) -> InFlight {
        let counter = self
            .in_flight
            .read()
            .expect("in-flight lock")
            .get(&backend)
            .cloned();
        let counter = counter.unwrap_or_else(|| {
            self.in_flight
                .write()
                .expect("in-flight lock")
                .entry(backend)
                .or_default()
                .clone()
        });
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }

    pub(super) fn is_ejected(&self, backend: SocketAddr) -> bool {
        let mut ejected = self.ejected.lock().expect("ejected lock");
        match ejected.get(&backend) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                ejected.remove(&backend);
                false
            }
            None => false,
        }
    }

    pub(super) fn eject(&self, backend: SocketAddr) {
        tracing::warn!(backend = %backend, "instance refused a connection; ejected");
        self.ejected
            .lock()
            .expect("ejected lock")
            .insert(backend, Instant::now() + EJECT_FOR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_while_in_flight() {
        let state = BackendState::default();
        let a: SocketAddr = "10.0.0.2:8080".parse().unwrap();
        assert_eq!(state.in_flight(a), 0);
        let first = state.start_request(a);
        let second = state.start_request(a);
        assert_eq!(state.in_flight(a), 2);
        drop(first);
        assert_eq!(state.in_flight(a), 1);
        drop(second);
        assert_eq!(state.in_flight(a), 0);
        state.eject(a);
        assert!(state.is_ejected(a));
    }
}
