//! The files a pod's containers share, as containerd gives them: `/etc/resolv.conf` from the
//! pod's DNS config (when it has one; otherwise the image's own file stays) and `/etc/hostname`,
//! written once into the pod's directory and bind-mounted read-only into each container.

use std::path::{Path, PathBuf};

use k8s_cri::v1::{DnsConfig, PodSandboxConfig};

/// resolv.conf text for a DNS config, or None when it names nothing.
pub fn resolv_conf(dns: &DnsConfig) -> Option<String> {
    if dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty() {
        return None;
    }
    let mut text = String::new();
    if !dns.searches.is_empty() {
        text.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for s in &dns.servers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    if !dns.options.is_empty() {
        text.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Some(text)
}

/// Writes the pod's files into `dir`; `(container path, host file)` pairs to bind-mount.
pub fn write(dir: &Path, config: &PodSandboxConfig) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    if !config.hostname.is_empty() {
        let path = dir.join("hostname");
        std::fs::write(&path, format!("{}\n", config.hostname))?;
        files.push(("/etc/hostname".to_string(), path));
    }
    if let Some(text) = config.dns_config.as_ref().and_then(resolv_conf) {
        let path = dir.join("resolv.conf");
        std::fs::write(&path, text)?;
        files.push(("/etc/resolv.conf".to_string(), path));
    }
    Ok(files)
}

/// The pod's files written by [`write`], found again in its directory.
pub fn existing(dir: &Path) -> Vec<(String, PathBuf)> {
    [
        ("/etc/hostname", "hostname"),
        ("/etc/resolv.conf", "resolv.conf"),
    ]
    .iter()
    .map(|(dest, name)| (dest.to_string(), dir.join(name)))
    .filter(|(_, p)| p.is_file())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_like_containerd() {
        assert_eq!(resolv_conf(&DnsConfig::default()), None);
        let dns = DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(&dns).as_deref(),
            Some(
                "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\n\
                 options ndots:5\n"
            )
        );
    }

    #[test]
    fn files_are_written_and_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = PodSandboxConfig {
            hostname: "web".into(),
            ..Default::default()
        };
        let files = write(dir.path(), &config).expect("written");
        assert_eq!(files, existing(dir.path()));
        assert_eq!(
            files.len(),
            1,
            "no DNS config: the image's resolv.conf stays"
        );
        assert_eq!(std::fs::read_to_string(&files[0].1).expect("read"), "web\n");
    }
}
