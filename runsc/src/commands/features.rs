//! `runsc features`: what this runtime implements, as the JSON document of the OCI
//! runtime spec's `features` (runc prints the same shape).

use clap::Args;
use serde_json::json;

use crate::oci::{OCI_VERSION_MAX, OCI_VERSION_MIN};

#[derive(Args)]
pub struct FeaturesArgs {}

/// Config annotations the runtime reads.
pub const CONFIG_ANNOTATIONS: [&str; 6] = [
    "dev.nanovisor.acl",
    "dev.nanovisor.acl-file",
    "io.kubernetes.cri.container-type",
    "io.kubernetes.cri.sandbox-id",
    "io.kubernetes.cri-o.ContainerType",
    "io.kubernetes.cri-o.SandboxID",
];

/// Capability names the runtime knows (every Linux capability up to 6.x).
const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Mount options the runtime recognizes.
const MOUNT_OPTIONS: [&str; 22] = [
    "bind",
    "rbind",
    "ro",
    "rw",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "relatime",
    "norelatime",
    "strictatime",
    "noatime",
    "private",
    "rprivate",
    "slave",
    "rslave",
    "shared",
    "rshared",
    "unbindable",
    "runbindable",
];

/// The features document.
pub fn features() -> serde_json::Value {
    json!({
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        // Hooks would run host programs next to a sandbox; none are run.
        "hooks": [],
        "mountOptions": MOUNT_OPTIONS.as_slice(),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": CAPABILITIES.as_slice(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            // The guest's system calls never reach the host kernel: a seccomp profile in
            // the spec is not applied to the guest.
            "seccomp": {"enabled": false},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {
            "dev.nanovisor.version": env!("CARGO_PKG_VERSION"),
            "dev.nanovisor.platform": "kvm",
            "dev.nanovisor.config-annotations": CONFIG_ANNOTATIONS.join(",")
        },
        "potentiallyUnsafeConfigAnnotations": ["dev.nanovisor."]
    })
}

pub fn run(_args: FeaturesArgs, _global: &super::GlobalOpts) -> anyhow::Result<i32> {
    println!("{}", serde_json::to_string_pretty(&features())?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_oci_features() {
        let f: oci_spec::runtime::Features =
            serde_json::from_value(features()).expect("oci-spec reads it");
        assert_eq!(f.oci_version_min(), OCI_VERSION_MIN);
        assert_eq!(f.hooks().as_deref(), Some(&[][..]));
        let linux = f.linux().as_ref().expect("linux");
        assert_eq!(linux.namespaces().as_ref().map(Vec::len), Some(7));
        assert_eq!(
            linux.seccomp().as_ref().and_then(|s| *s.enabled()),
            Some(false)
        );
        assert!(f
            .annotations()
            .as_ref()
            .expect("annotations")
            .contains_key("dev.nanovisor.version"));
    }
}
