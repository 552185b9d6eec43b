//! A network namespace of the test's own, joined to this one by a veth
//! pair: a host whose link a test can cut and heal, as a network partition
//! between the gateway and its brokers. Made with `ip` (iproute2); needs
//! the right to manage network namespaces (root, or CAP_NET_ADMIN).

use std::process::{Command, Stdio};

use crate::kafka::Namespace;

/// The namespace and its link: see the module. Removed when dropped.
pub struct Netns {
    /// The namespace's name.
    name: String,
    /// The veth end in this namespace.
    host_link: String,
    /// The veth end in the test's namespace.
    inner_link: String,
    /// The address of the test's namespace end.
    address: String,
}

impl Netns {
    /// A new namespace for this test process, its link up.
    pub fn create() -> Result<Self, String> {
        // One namespace per test process, on a /30 of its own.
        let id = std::process::id() % 60_000;
        let (third, fourth) = (id / 60 % 250, (id % 60) * 4);
        let netns = Netns {
            name: format!("egw-{id}"),
            host_link: format!("egw{id}h"),
            inner_link: format!("egw{id}n"),
            address: format!("10.201.{third}.{}", fourth + 2),
        };
        let host_address = format!("10.201.{third}.{}/30", fourth + 1);
        let inner_address = format!("{}/30", netns.address);
        // What a killed run of the same number left behind.
        let _ = netns.ip(&["link", "del", &netns.host_link]);
        let _ = netns.ip(&["netns", "del", &netns.name]);
        netns.ip(&["netns", "add", &netns.name])?;
        netns.ip(&[
            "link",
            "add",
            &netns.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &netns.inner_link,
        ])?;
        netns.ip(&["link", "set", &netns.inner_link, "netns", &netns.name])?;
        netns.ip(&["addr", "add", &host_address, "dev", &netns.host_link])?;
        netns.ip(&["link", "set", &netns.host_link, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", netns.name.as_str()];
            all.extend_from_slice(args);
            netns.ip(&all)
        };
        inside(&["addr", "add", &inner_address, "dev", &netns.inner_link])?;
        inside(&["link", "set", &netns.inner_link, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Where a node inside it runs.
    pub fn namespace(&self) -> Namespace {
        Namespace {
            name: self.name.clone(),
            address: self.address.clone(),
        }
    }

    /// Cuts the link: what this namespace sends there is dropped without a
    /// word, as on a partitioned network.
    pub fn cut(&self) {
        self.ip(&["-n", &self.name, "link", "set", &self.inner_link, "down"])
            .unwrap_or_else(|error| panic!("{error}"));
    }

    /// Heals the link.
    pub fn heal(&self) {
        self.ip(&["-n", &self.name, "link", "set", &self.inner_link, "up"])
            .unwrap_or_else(|error| panic!("{error}"));
    }

    /// Runs `ip` with `args`; what it said when it failed.
    fn ip(&self, args: &[&str]) -> Result<(), String> {
        let output = Command::new("ip")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("cannot run ip (iproute2): {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {} failed: {} (network namespaces need root or CAP_NET_ADMIN)",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.ip(&["link", "del", &self.host_link]);
        let _ = self.ip(&["netns", "del", &self.name]);
    }
}
