//! A network namespace made the way a CNI bridge plugin makes a pod's: `eth0` (a veth) with
//! `10.N.X.2/24`, up, a default route via the host end's `10.N.X.1`. Dropping it deletes the
//! veth pair and the namespace, whatever happened in between. Needs root and iproute2.

use std::net::Ipv4Addr;
use std::process::Command;

/// Run `ip ARGS`; its stdout, or a panic naming the command.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running `ip {}`: {e} (install iproute2)", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct CniNetns {
    pub name: String,
    pub host_if: String,
    net: u8,
    subnet: u8,
    veth: bool,
}

impl CniNetns {
    /// A namespace named `TAG-PID` on a free /24 of `10.NET.0.0/16`.
    pub fn create(tag: &str, net: u8) -> CniNetns {
        let pid = std::process::id();
        let used = format!(
            "{}{}",
            ip(&["-j", "-4", "addr"]),
            ip(&["-j", "-4", "route", "show", "table", "all"])
        );
        let subnet = (0..250u32)
            .map(|i| ((pid + i) % 250 + 1) as u8)
            .find(|x| !used.contains(&format!("\"10.{net}.{x}.")))
            .expect("a free /24");
        let mut ns = CniNetns {
            name: format!("{tag}-{pid}"),
            host_if: format!("{}{pid}", &tag[..tag.len().min(4)]),
            net,
            subnet,
            veth: false,
        };
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns.name,
        ]);
        ns.veth = true;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", ns.host()),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        let guest = format!("{}/24", ns.guest());
        ns.ip_inside(&["addr", "add", &guest, "dev", "eth0"]);
        ns.ip_inside(&["link", "set", "lo", "up"]);
        ns.ip_inside(&["link", "set", "eth0", "up"]);
        ns.ip_inside(&["route", "add", "default", "via", &ns.host().to_string()]);
        ns
    }

    pub fn host(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, self.subnet, 1)
    }

    pub fn guest(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, self.subnet, 2)
    }

    /// The namespace's path, for an OCI spec's `linux.namespaces`.
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// The addresses the namespace's kernel holds on `eth0`.
    pub fn kernel_addrs(&self) -> Vec<String> {
        let json = self.ip_inside(&["-j", "addr", "show", "dev", "eth0"]);
        let links: serde_json::Value = serde_json::from_str(&json).expect("ip -j addr");
        links[0]["addr_info"]
            .as_array()
            .map(|infos| {
                infos
                    .iter()
                    .filter_map(|a| a["local"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn ip_inside(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }
}

impl Drop for CniNetns {
    fn drop(&mut self) {
        // The pair would go with the namespace, but the kernel deletes namespaces lazily.
        if self.veth {
            let _ = Command::new("ip")
                .args(["link", "del", &self.host_if])
                .output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
