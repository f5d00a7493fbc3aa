//! A container's OCI config.json, from its image's config and CRI's ContainerConfig, as
//! containerd's CRI plugin builds it for runc: the command (Kubernetes' rules for command,
//! args, Entrypoint and Cmd), environment, working directory, user, mounts, and the
//! annotations by which runsc puts a pod's containers in one sandbox
//! (`io.kubernetes.cri.container-type`, `io.kubernetes.cri.sandbox-id`), and the resources and
//! cgroup its callers chose (resources.rs, cgroup.rs).

use std::collections::HashMap;
use std::path::Path;

use k8s_cri::v1::{ContainerConfig, Mount as CriMount, PodSandboxConfig};
use serde_json::{json, Value};

use crate::images::ImageInfo;

pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// A container's role in its pod, as runsc reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role<'a> {
    /// The pod's sandbox container (pause): its sandbox process holds the pod.
    Sandbox { pod: &'a str },
    /// A container that joins the sandbox of container `sandbox`.
    Member { sandbox: &'a str },
    /// A container with a sandbox of its own (one restored from a checkpoint image).
    Own,
}

/// The process's argv by Kubernetes' rules: `command` replaces the image's Entrypoint, `args`
/// its Cmd; with a command but no args, Cmd is not used.
pub fn argv(image: &ImageInfo, command: &[String], args: &[String]) -> Result<Vec<String>, String> {
    let (entry, rest) = if !command.is_empty() {
        (command.to_vec(), args.to_vec())
    } else if !args.is_empty() {
        (image.entrypoint.clone(), args.to_vec())
    } else {
        (image.entrypoint.clone(), image.cmd.clone())
    };
    let argv: Vec<String> = entry.into_iter().chain(rest).collect();
    if argv.is_empty() {
        return Err(format!(
            "no command: the container sets none and image {:?} has no Entrypoint or Cmd",
            image.name
        ));
    }
    Ok(argv)
}

/// The image's environment with the container's on top (same key: the container's wins).
pub fn env(image: &[String], container: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let pairs = image
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .chain(container.iter().cloned());
    for (k, v) in pairs {
        let line = format!("{k}={v}");
        match index.get(&k) {
            Some(&i) => out[i] = line,
            None => {
                index.insert(k, out.len());
                out.push(line);
            }
        }
    }
    out
}

/// uid and gid: the security context's, else the image's `User` (`uid[:gid]` or a name in
/// the rootfs's /etc/passwd), else root.
pub fn user(
    image_user: &str,
    run_as: Option<i64>,
    run_as_group: Option<i64>,
    rootfs: &Path,
) -> Result<(u32, u32), String> {
    let id = |v: i64| u32::try_from(v).map_err(|_| format!("user or group id {v} out of range"));
    let (mut uid, mut gid) = (0u32, 0u32);
    if !image_user.is_empty() {
        let (u, g) = image_user.split_once(':').unwrap_or((image_user, ""));
        let passwd = || std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
        match u.parse::<u32>() {
            Ok(n) => uid = n,
            Err(_) => {
                let passwd = passwd();
                let entry = passwd
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() > 3 && f[0] == u)
                    .ok_or_else(|| format!("image user {u:?} is not in the image's /etc/passwd"))?;
                uid = entry[2]
                    .parse()
                    .map_err(|_| format!("bad uid for user {u:?}"))?;
                gid = entry[3]
                    .parse()
                    .map_err(|_| format!("bad gid for user {u:?}"))?;
            }
        }
        if !g.is_empty() {
            gid = g
                .parse()
                .map_err(|_| format!("image group {g:?}: only numeric groups are supported"))?;
        }
    }
    if let Some(u) = run_as {
        uid = id(u)?;
        if run_as_group.is_none() && image_user.is_empty() {
            gid = 0;
        }
    }
    if let Some(g) = run_as_group {
        gid = id(g)?;
    }
    Ok((uid, gid))
}

fn cri_mount(m: &CriMount) -> Result<Value, String> {
    if !m.container_path.starts_with('/') || m.host_path.is_empty() {
        return Err(format!(
            "mount {:?} -> {:?}: want an absolute container path and a host path",
            m.host_path, m.container_path
        ));
    }
    let mut options = vec!["rbind"];
    options.push(if m.readonly { "ro" } else { "rw" });
    Ok(json!({
        "destination": m.container_path,
        "type": "bind",
        "source": m.host_path,
        "options": options,
    }))
}

/// Everything config.json is made of.
pub struct Input<'a> {
    pub image: &'a ImageInfo,
    pub container: &'a ContainerConfig,
    pub pod: &'a PodSandboxConfig,
    pub netns: &'a Path,
    pub role: Role<'a>,
    /// The bundle's rootfs (mounted), for the image user's name.
    pub rootfs: &'a Path,
    /// Pod files to bind read-only: (container path, host file).
    pub files: &'a [(String, std::path::PathBuf)],
    /// OCI `linux.resources` (resources.rs).
    pub resources: Option<Value>,
    /// `linux.cgroupsPath`, for a container that owns its sandbox (cgroup.rs).
    pub cgroups_path: Option<String>,
}

pub fn config(input: &Input<'_>) -> Result<Value, String> {
    let c = input.container;
    let argv = argv(input.image, &c.command, &c.args)?;
    let envs: Vec<(String, String)> = c
        .envs
        .iter()
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    let mut env = env(&input.image.env, &envs);
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    env.push(format!("HOSTNAME={}", input.pod.hostname));
    let security = c.linux.as_ref().and_then(|l| l.security_context.as_ref());
    let (uid, gid) = user(
        &input.image.user,
        security
            .and_then(|s| s.run_as_user.as_ref())
            .map(|v| v.value),
        security
            .and_then(|s| s.run_as_group.as_ref())
            .map(|v| v.value),
        input.rootfs,
    )?;
    let cwd = if !c.working_dir.is_empty() {
        c.working_dir.clone()
    } else if !input.image.working_dir.is_empty() {
        input.image.working_dir.clone()
    } else {
        "/".into()
    };
    if !cwd.starts_with('/') {
        return Err(format!("working directory {cwd:?} is not absolute"));
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]}),
    ];
    for (dest, source) in input.files {
        // A container's own mount of the same path wins, as in containerd.
        if !c.mounts.iter().any(|m| &m.container_path == dest) {
            mounts.push(json!({"destination": dest, "type": "bind", "source": source, "options": ["rbind", "ro"]}));
        }
    }
    for m in &c.mounts {
        mounts.push(cri_mount(m)?);
    }
    let mut annotations: serde_json::Map<String, Value> = c
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let name = c
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let pod_meta = input.pod.metadata.clone().unwrap_or_default();
    annotations.insert(
        "io.kubernetes.cri.sandbox-name".into(),
        json!(pod_meta.name),
    );
    annotations.insert(
        "io.kubernetes.cri.sandbox-namespace".into(),
        json!(pod_meta.namespace),
    );
    annotations.insert("io.kubernetes.cri.sandbox-uid".into(), json!(pod_meta.uid));
    match input.role {
        Role::Sandbox { pod } => {
            annotations.insert(CONTAINER_TYPE.into(), json!("sandbox"));
            annotations.insert(SANDBOX_ID.into(), json!(pod));
        }
        Role::Member { sandbox } => {
            annotations.insert(CONTAINER_TYPE.into(), json!("container"));
            annotations.insert(SANDBOX_ID.into(), json!(sandbox));
            annotations.insert("io.kubernetes.cri.container-name".into(), json!(name));
            annotations.insert(
                "io.kubernetes.cri.image-name".into(),
                json!(input.image.name),
            );
        }
        Role::Own => {
            annotations.insert("io.kubernetes.cri.container-name".into(), json!(name));
            annotations.insert(
                "io.kubernetes.cri.image-name".into(),
                json!(input.image.name),
            );
        }
    }
    // The pod's policy (dev.nanovisor.acl*) goes to whichever container owns the sandbox.
    if !matches!(input.role, Role::Member { .. }) {
        for (k, v) in &input.pod.annotations {
            if k.starts_with("dev.nanovisor.") {
                annotations.insert(k.clone(), json!(v));
            }
        }
    }
    let hostname = input.pod.hostname.clone();
    let mut linux = json!({
        "namespaces": [
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
            {"type": "network", "path": input.netns},
        ],
    });
    if let Some(r) = &input.resources {
        linux["resources"] = r.clone();
    }
    if let Some(p) = &input.cgroups_path {
        linux["cgroupsPath"] = json!(p);
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": argv,
            "env": env,
            "cwd": cwd,
        },
        "root": {"path": "rootfs", "readonly": c.linux.as_ref().and_then(|l| l.security_context.as_ref()).is_some_and(|s| s.readonly_rootfs)},
        "hostname": hostname,
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux,
    }))
}

/// The process of an ExecSync, for `runsc exec --process`: the container's environment,
/// directory and user.
pub fn exec_process(container: &Value, cmd: &[String]) -> Value {
    let p = container.get("process").cloned().unwrap_or(Value::Null);
    json!({
        "terminal": false,
        "args": cmd,
        "env": p.get("env").cloned().unwrap_or(json!([])),
        "cwd": p.get("cwd").cloned().unwrap_or(json!("/")),
        "user": p.get("user").cloned().unwrap_or(json!({"uid": 0, "gid": 0})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entry: &[&str], cmd: &[&str]) -> ImageInfo {
        ImageInfo {
            name: "img".into(),
            entrypoint: entry.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }
    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kubernetes_command_rules() {
        let i = image(&["/ep"], &["c1"]);
        assert_eq!(argv(&i, &[], &[]), Ok(v(&["/ep", "c1"])));
        assert_eq!(argv(&i, &[], &v(&["a"])), Ok(v(&["/ep", "a"])));
        assert_eq!(argv(&i, &v(&["node"]), &[]), Ok(v(&["node"])));
        assert_eq!(argv(&i, &v(&["node"]), &v(&["x"])), Ok(v(&["node", "x"])));
        assert!(argv(&image(&[], &[]), &[], &[]).is_err());
    }

    #[test]
    fn environment_merges() {
        let e = env(
            &v(&["PATH=/bin", "A=1"]),
            &[("A".into(), "2".into()), ("B".into(), "3".into())],
        );
        assert_eq!(e, v(&["PATH=/bin", "A=2", "B=3"]));
    }

    #[test]
    fn users() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("etc")).expect("mkdir");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nnode:x:1000:1001::/home/node:/bin/sh\n",
        )
        .expect("write");
        let r = dir.path();
        assert_eq!(user("", None, None, r), Ok((0, 0)));
        assert_eq!(user("5:6", None, None, r), Ok((5, 6)));
        assert_eq!(user("node", None, None, r), Ok((1000, 1001)));
        assert_eq!(user("node", Some(7), None, r), Ok((7, 1001)));
        assert_eq!(user("", Some(7), Some(8), r), Ok((7, 8)));
        assert!(user("ghost", None, None, r).is_err());
        assert!(user("", Some(-1), None, r).is_err());
    }

    #[test]
    fn mounts_are_checked() {
        let ok = CriMount {
            host_path: "/data".into(),
            container_path: "/d".into(),
            readonly: true,
            ..Default::default()
        };
        assert_eq!(
            cri_mount(&ok).expect("valid")["options"],
            json!(["rbind", "ro"])
        );
        let bad = CriMount {
            host_path: "/data".into(),
            container_path: "d".into(),
            ..Default::default()
        };
        assert!(cri_mount(&bad).is_err());
    }
}
