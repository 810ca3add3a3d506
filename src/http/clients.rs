//! Fairness between clients: how many connections each client holds, so that one client
//! cannot take the whole connection cap. A client is an IPv4 address, or an IPv6 /64 (one
//! host usually has a whole /64 to pick addresses from, so counting single IPv6 addresses
//! would limit nothing).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Who a connection counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    pub fn of(peer: IpAddr) -> Self {
        match peer.to_canonical() {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Self(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// One client's live connections.
#[derive(Debug, Default)]
struct Held {
    connections: usize,
    /// Whether a refusal was logged since the client last held no connection: one warning per
    /// episode, not one per refused connection (a flood must not flood the log).
    warned: bool,
}

/// The live connections of every client, shared by the accept loop and the connections. Only
/// clients with a live connection have an entry, so it is bounded by the connection cap.
#[derive(Debug, Clone)]
pub struct Clients {
    held: Arc<Mutex<HashMap<Client, Held>>>,
    max_per_client: usize,
}

/// A connection counted against its client until dropped.
#[derive(Debug)]
pub struct Slot {
    clients: Clients,
    client: Client,
}

/// A connection refused because its client holds the most it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub client: Client,
    pub max_per_client: usize,
    /// The first refusal since the client last held nothing (the one worth a warning).
    pub first: bool,
}

impl Clients {
    pub fn new(max_per_client: usize) -> Self {
        Self {
            held: Arc::default(),
            max_per_client,
        }
    }

    /// Counts a new connection from `peer`, unless its client already holds the maximum.
    pub fn admit(&self, peer: IpAddr) -> Result<Slot, Refused> {
        let client = Client::of(peer);
        let mut held = self.held.lock().expect("no panics while locked");
        let entry = held.entry(client).or_default();
        if entry.connections >= self.max_per_client {
            let first = !entry.warned;
            entry.warned = true;
            return Err(Refused {
                client,
                max_per_client: self.max_per_client,
                first,
            });
        }
        entry.connections += 1;
        Ok(Slot {
            clients: self.clone(),
            client,
        })
    }

    /// The connections `peer`'s client holds.
    #[cfg(test)]
    pub(super) fn holding(&self, peer: IpAddr) -> usize {
        let held = self.held.lock().expect("no panics while locked");
        held.get(&Client::of(peer)).map_or(0, |h| h.connections)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.clients.held.lock().expect("no panics while locked");
        if let Some(entry) = held.get_mut(&self.client) {
            entry.connections -= 1;
            if entry.connections == 0 {
                held.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_64() {
        assert_eq!(Client::of(ip("10.0.0.1")).to_string(), "10.0.0.1");
        assert_ne!(Client::of(ip("10.0.0.1")), Client::of(ip("10.0.0.2")));
        // IPv4 reaching a dual-stack listener counts as itself.
        assert_eq!(
            Client::of(ip("::ffff:10.0.0.1")),
            Client::of(ip("10.0.0.1"))
        );
        assert_eq!(
            Client::of(ip("2001:db8:1:2:aaaa::1")),
            Client::of(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            Client::of(ip("2001:db8:1:2::1")),
            Client::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Client::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn each_client_gets_its_maximum_and_dropping_a_slot_frees_one() {
        let clients = Clients::new(2);
        let a = ip("127.0.0.1");
        let b = ip("127.0.0.2");
        let first = clients.admit(a).unwrap();
        let _second = clients.admit(a).unwrap();
        let refused = clients.admit(a).unwrap_err();
        assert!(refused.first);
        assert!(
            !clients.admit(a).unwrap_err().first,
            "one warning per episode"
        );
        // Another client is not affected.
        let _other = clients.admit(b).unwrap();
        drop(first);
        assert_eq!(clients.holding(a), 1);
        let _third = clients.admit(a).unwrap();
        assert_eq!(clients.holding(a), 2);
    }

    #[test]
    fn a_client_that_closed_everything_leaves_no_entry() {
        let clients = Clients::new(1);
        let a = ip("127.0.0.1");
        drop(clients.admit(a).unwrap());
        assert!(clients.held.lock().unwrap().is_empty());
        assert!(clients.admit(a).is_ok());
    }
}
