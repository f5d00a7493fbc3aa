//! What is persisted of a pod, under `ROOT/pods/ID/record.json`: enough to release it after
//! nanovisor-cri restarts (its runsc containers, mounts, snapshots, sandbox cgroups, CNI
//! attachment and network namespace). Pods are not adopted back: on start every recorded pod is released, and kubelet
//! makes its pods again, seeing them gone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cni::NetConfList;

const RECORD: &str = "record.json";
/// The largest record read.
const MAX_RECORD: u64 = 1 << 20;

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct PodRecord {
    pub id: String,
    pub netns: Option<PathBuf>,
    pub cni: Option<CniRecord>,
    /// runsc container ids, in creation order.
    pub runsc_ids: Vec<String>,
    /// Bundles with a rootfs that may be mounted.
    pub bundles: Vec<PathBuf>,
    /// Snapshot keys.
    pub snapshots: Vec<String>,
    /// `linux.cgroupsPath`s of the pod's sandboxes (cgroup.rs), removed after the sandboxes.
    #[serde(default)]
    pub cgroups: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CniRecord {
    pub list: NetConfList,
    pub args: Vec<(String, String)>,
    /// The capability arguments ADD got; DEL gets them again.
    #[serde(default)]
    pub runtime_config: serde_json::Value,
    pub result: serde_json::Value,
}

pub fn save(dir: &Path, record: &PodRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let text = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    let tmp = dir.join(".record.json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, dir.join(RECORD))
}

pub fn load(dir: &Path) -> std::io::Result<PodRecord> {
    use std::io::Read as _;
    let mut text = Vec::new();
    std::fs::File::open(dir.join(RECORD))?
        .take(MAX_RECORD)
        .read_to_end(&mut text)?;
    serde_json::from_slice(&text).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = PodRecord {
            id: "p".into(),
            netns: Some("/var/run/netns/cni-x".into()),
            runsc_ids: vec!["p".into()],
            snapshots: vec!["nanovisor/p".into()],
            cgroups: vec!["/kubepods/pod1/p".into()],
            ..Default::default()
        };
        save(dir.path(), &r).expect("save");
        assert_eq!(load(dir.path()).expect("load"), r);
    }

    #[test]
    fn records_of_an_older_run_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old =
            r#"{"id":"p","netns":null,"cni":null,"runsc_ids":["p"],"bundles":[],"snapshots":[]}"#;
        std::fs::write(dir.path().join(RECORD), old).expect("write");
        assert!(load(dir.path()).expect("load").cgroups.is_empty());
    }
}
