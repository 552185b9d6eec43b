//! Connections per client address: at most `--max-connections-per-ip` open
//! at once, and at most `--max-connection-rate-per-ip` new ones a second
//! (a bucket of one second's worth), as Kafka's `max.connections.per.ip`
//! and KIP-612 bound them; `--connection-overrides` gives some addresses
//! (a load balancer, a benchmark host) limits of their own. One address
//! flooding the listener takes no more than its own places.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

/// Addresses tracked before those with nothing open and a full bucket are
/// dropped.
const SWEEP_ABOVE: usize = 10_000;

/// The limits of one address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AddressLimits {
    /// Connections open at once.
    pub(crate) connections: usize,
    /// New connections a second, sustained (one second's worth at once).
    pub(crate) rate: f64,
}

/// Why a connection of an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It has its limit of connections open.
    Connections,
    /// It opened connections faster than its rate.
    Rate,
}

/// What an address holds.
#[derive(Debug)]
struct Usage {
    open: usize,
    tokens: f64,
    refilled: Instant,
}

/// Connections by address; cloning shares them.
#[derive(Debug, Clone)]
pub(crate) struct PerAddress {
    limits: AddressLimits,
    overrides: Arc<HashMap<IpAddr, AddressLimits>>,
    usage: Arc<Mutex<HashMap<IpAddr, Usage>>>,
}

/// A connection counted against its address, until this goes.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    per_address: PerAddress,
    address: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Some(usage) = self.per_address.lock().get_mut(&self.address) {
            usage.open = usage.open.saturating_sub(1);
        }
    }
}

impl PerAddress {
    /// `limits` for every address but those `overrides` names.
    pub(crate) fn new(limits: AddressLimits, overrides: HashMap<IpAddr, AddressLimits>) -> Self {
        Self {
            limits,
            overrides: Arc::new(overrides),
            usage: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Usage>> {
        self.usage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place for one more connection of `address` at `now`, or why not.
    pub(crate) fn admit(&self, address: IpAddr, now: Instant) -> Result<AddressSlot, Refused> {
        let limits = self.overrides.get(&address).copied().unwrap_or(self.limits);
        let burst = limits.rate.max(1.0);
        let mut usage = self.lock();
        if usage.len() > SWEEP_ABOVE && !usage.contains_key(&address) {
            usage.retain(|_, held| {
                held.open > 0 || (now - held.refilled).as_secs_f64() * limits.rate < burst
            });
        }
        let held = usage.entry(address).or_insert(Usage {
            open: 0,
            tokens: burst,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(held.refilled).as_secs_f64();
        held.tokens = (held.tokens + elapsed * limits.rate).min(burst);
        held.refilled = now;
        if held.open >= limits.connections {
            return Err(Refused::Connections);
        }
        if held.tokens < 1.0 {
            return Err(Refused::Rate);
        }
        held.tokens -= 1.0;
        held.open += 1;
        drop(usage);
        Ok(AddressSlot {
            per_address: self.clone(),
            address,
        })
    }
}

/// The limits `--connection-overrides` gives its addresses: each its
/// count of connections, and as many new ones a second.
pub(crate) fn overrides(entries: &[(IpAddr, usize)]) -> HashMap<IpAddr, AddressLimits> {
    entries
        .iter()
        .map(|&(address, connections)| {
            let limits = AddressLimits {
                connections,
                rate: connections as f64,
            };
            (address, limits)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_address_gets_its_places_at_its_rate_and_others_theirs() {
        let limits = AddressLimits {
            connections: 3,
            rate: 2.0,
        };
        let lb: IpAddr = "10.0.0.5".parse().unwrap();
        let per_address = PerAddress::new(limits, overrides(&[(lb, 100)]));
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let now = Instant::now();
        // A burst of one second's worth, then the rate.
        let first = per_address.admit(a, now).unwrap();
        let _second = per_address.admit(a, now).unwrap();
        assert_eq!(per_address.admit(a, now).unwrap_err(), Refused::Rate);
        let later = now + Duration::from_millis(500);
        let _third = per_address.admit(a, later).unwrap();
        // Three open: the cap, whatever the rate.
        let much_later = later + Duration::from_secs(10);
        assert_eq!(
            per_address.admit(a, much_later).unwrap_err(),
            Refused::Connections
        );
        drop(first);
        let _again = per_address.admit(a, much_later).unwrap();
        // Another address is untouched; an override has its own limits.
        assert!(per_address.admit(b, now).is_ok());
        let held: Vec<_> = (0..50)
            .map(|_| per_address.admit(lb, now).unwrap())
            .collect();
        assert_eq!(held.len(), 50);
    }
}
