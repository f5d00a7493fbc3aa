//! Pod sandboxes: RunPodSandbox (network namespace, CNI, and the sandbox: the pause image
//! booted by runsc, or for a pod annotated with a checkpoint image nothing until its first
//! container restores one), Stop (containers killed, sandbox deleted, network released),
//! Remove (everything else), status, list and stats.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_cri::v1::*;
use shim::exits::Mark;
use shim::runsc::Stdio3;

use crate::error::{Error, Result};
use crate::model::{Pod, PodKind};
use crate::record::{self, CniRecord, PodRecord};
use crate::spec::{self, Role};
use crate::{
    blocking, cgroup, cni, containers, filters, names, netns, resources, rootfs, status, Inner,
};

/// The pod annotation naming a checkpoint image (as the shim's).
pub const CHECKPOINT_ANNOTATION: &str = shim::bundle::CHECKPOINT_ANNOTATION;

/// The pod `id` names (an id or a unique prefix of one).
pub fn resolve(inner: &Inner, id: &str) -> Result<String> {
    let state = inner.lock();
    filters::resolve(id, state.pods.keys())
        .ok_or_else(|| Error::NotFound(format!("pod sandbox {id:?}")))
}

/// The checkpoint image a pod's annotation names, checked to exist.
fn checkpoint_image(inner: &Inner, config: &PodSandboxConfig) -> Result<Option<PathBuf>> {
    let Some(name) = config.annotations.get(CHECKPOINT_ANNOTATION) else {
        return Ok(None);
    };
    let annotated = serde_json::json!({"annotations": {CHECKPOINT_ANNOTATION: name}});
    shim::bundle::checkpoint_image(&annotated, &inner.config.checkpoint_dir).map_err(Error::Invalid)
}

pub fn save_record(inner: &Inner, id: &str) {
    let (dir, rec) = {
        let state = inner.lock();
        let Some(p) = state.pods.get(id) else { return };
        (p.dir.clone(), p.record.clone())
    };
    if let Err(e) = record::save(&dir, &rec) {
        tracing::warn!(pod = id, "saving the pod's record: {e}");
    }
}

/// Edits a pod's record and saves it.
pub fn update_record(inner: &Inner, id: &str, f: impl FnOnce(&mut PodRecord)) {
    if let Some(p) = inner.lock().pods.get_mut(id) {
        f(&mut p.record);
    }
    save_record(inner, id);
}

fn validate(config: &PodSandboxConfig) -> Result<()> {
    let meta = config
        .metadata
        .as_ref()
        .ok_or_else(|| Error::Invalid("pod sandbox config: no metadata".into()))?;
    if meta.name.is_empty() || meta.namespace.is_empty() || meta.uid.is_empty() {
        return Err(Error::Invalid(
            "pod sandbox metadata: name, namespace and uid are required".into(),
        ));
    }
    if !config.log_directory.is_empty() && !Path::new(&config.log_directory).is_absolute() {
        return Err(Error::Invalid(format!(
            "log directory {:?} is not absolute",
            config.log_directory
        )));
    }
    Ok(())
}

/// kubelet's cgroup for the pod (`linux.cgroup_parent`); empty without one.
pub(crate) fn cgroup_parent(config: &PodSandboxConfig) -> &str {
    config
        .linux
        .as_ref()
        .map_or("", |l| l.cgroup_parent.as_str())
}

/// The pod-level resources (resources.rs), checked: InvalidArgument naming what is refused;
/// less what kubelet's pod cgroup, when there is one, leaves unlimited.
pub(crate) fn sandbox_resources(
    config: &PodSandboxConfig,
) -> Result<Option<LinuxContainerResources>> {
    let sum =
        resources::pod_level(config).map_err(|e| Error::Invalid(format!("pod sandbox {e}")))?;
    // Two small sysfs reads: not worth a blocking task.
    Ok(sum.map(|r| resources::within_parent(r, cgroup::parent_limits(cgroup_parent(config)))))
}

/// The sandbox cgroup of runsc container `rid` for pod `id`: recorded before runsc makes it,
/// so that whatever happens next it is removed (cgroup.rs).
pub(crate) fn record_cgroup(
    inner: &Inner,
    id: &str,
    config: &PodSandboxConfig,
    rid: &str,
) -> Result<String> {
    let path = cgroup::cgroups_path(cgroup_parent(config), rid).map_err(Error::Invalid)?;
    update_record(inner, id, |r| r.cgroups.push(path.clone()));
    Ok(path)
}

/// Removes the cgroup at `path` (after its sandbox has gone) and forgets it in pod `id`'s
/// record.
pub(crate) async fn remove_cgroup(inner: &Inner, id: &str, path: String) -> Result<()> {
    let p = path.clone();
    blocking(move || cgroup::remove(&p).map_err(Error::io("removing the sandbox's cgroup")))
        .await?;
    update_record(inner, id, |r| r.cgroups.retain(|c| c != &path));
    Ok(())
}

/// CNI_ARGS for a pod, as containerd sets them.
fn cni_args(id: &str, config: &PodSandboxConfig) -> Vec<(String, String)> {
    let meta = config.metadata.clone().unwrap_or_default();
    vec![
        ("K8S_POD_NAMESPACE".into(), meta.namespace),
        ("K8S_POD_NAME".into(), meta.name),
        ("K8S_POD_INFRA_CONTAINER_ID".into(), id.into()),
        ("K8S_POD_UID".into(), meta.uid),
    ]
}

pub async fn run(inner: &Arc<Inner>, r: RunPodSandboxRequest) -> Result<RunPodSandboxResponse> {
    if !r.runtime_handler.is_empty() && r.runtime_handler != crate::HANDLER {
        return Err(Error::Invalid(format!(
            "runtime handler {:?} is not {:?}",
            r.runtime_handler,
            crate::HANDLER
        )));
    }
    let config = r
        .config
        .ok_or_else(|| Error::Invalid("RunPodSandbox: no config".into()))?;
    validate(&config)?;
    let image = checkpoint_image(inner, &config)?;
    let limited = sandbox_resources(&config)?.is_some_and(|r| resources::limits(&r));
    cgroup::check_parent(cgroup_parent(&config)).map_err(Error::Invalid)?;
    // A pod with a policy of its own never takes a pooled sandbox, made without it.
    // Nor does one with host ports: the pooled sandbox's CNI ADD had none. Nor one with a
    // memory or CPU limit: the pooled sandbox's guest memory and cgroup were made without it.
    let own_acl = shim::bundle::ACL_ANNOTATIONS
        .iter()
        .any(|k| config.annotations.contains_key(*k));
    let poolable = !own_acl && !limited && config.port_mappings.iter().all(|m| m.host_port <= 0);
    if let (Some(name), true) = (config.annotations.get(CHECKPOINT_ANNOTATION), poolable) {
        if let Some(warm) = inner.pools.claim(name) {
            return Ok(claim(inner, config, warm).await);
        }
    }
    let id = names::new_id().map_err(Error::io("making an id"))?;
    let dir = inner.pods_dir().join(&id);
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let ns_name = names::netns_name().map_err(Error::io("naming a network namespace"))?;
    let ns = PathBuf::from(netns::NETNS_DIR).join(&ns_name);
    let kind = match image {
        Some(image) => PodKind::Restored { image },
        None => PodKind::Booted,
    };
    let op = Arc::new(tokio::sync::Mutex::new(()));
    let guard = Arc::clone(&op).lock_owned().await;
    inner.lock().pods.insert(
        id.clone(),
        Pod {
            id: id.clone(),
            config: config.clone(),
            created_at: status::now_nanos(),
            ready: false,
            creating: true,
            kind: kind.clone(),
            netns: ns.clone(),
            ips: Vec::new(),
            sandbox: None,
            dir: dir.clone(),
            record: PodRecord {
                id: id.clone(),
                netns: Some(ns.clone()),
                ..Default::default()
            },
            op,
            pooled: None,
        },
    );
    // Recorded before anything is made: a crash from here on still gets it all released.
    save_record(inner, &id);
    let made = async {
        blocking(move || {
            netns::create(&ns_name).map_err(Error::io("creating the pod's network namespace"))
        })
        .await?;
        crate::etc::write(&dir, &config).map_err(Error::io(format!(
            "writing the pod's files in {}",
            dir.display()
        )))?;
        attach_network(inner, &id, &config, &ns).await?;
        if kind == PodKind::Booted {
            boot_sandbox(inner, &id, &config, &ns).await?;
        }
        Ok::<(), Error>(())
    }
    .await;
    if let Err(e) = made {
        drop(guard);
        if let Err(c) = release(inner, &id, true).await {
            tracing::warn!(pod = id, "cleaning up a pod that failed to start: {c}");
        }
        return Err(e);
    }
    if let Some(p) = inner.lock().pods.get_mut(&id) {
        p.ready = true;
        p.creating = false;
    }
    drop(guard);
    Ok(RunPodSandboxResponse { pod_sandbox_id: id })
}

/// A pod made of a pooled sandbox (pool.rs): its record is on disk already.
async fn claim(
    inner: &Arc<Inner>,
    config: PodSandboxConfig,
    mut warm: crate::pool::Warm,
) -> RunPodSandboxResponse {
    let id = warm.pod_id.clone();
    if !cgroup_parent(&config).is_empty() {
        adopt_pooled(&config, &mut warm).await;
    }
    inner.lock().pods.insert(
        id.clone(),
        Pod {
            id: id.clone(),
            config,
            created_at: status::now_nanos(),
            ready: true,
            creating: false,
            kind: PodKind::Restored {
                image: warm.checkpoint.clone(),
            },
            netns: warm.netns.clone(),
            ips: warm.ips.clone(),
            sandbox: Some(warm.ctr_id.clone()),
            dir: warm.dir.clone(),
            record: warm.record.clone(),
            op: Arc::new(tokio::sync::Mutex::new(())),
            pooled: Some(Box::new(warm)),
        },
    );
    RunPodSandboxResponse { pod_sandbox_id: id }
}

/// Moves a claimed pooled sandbox from its own `/nanovisor/ID` into a cgroup under the
/// pod's `cgroup_parent`, so that kubelet's pod cgroup bounds and counts it (the pod has no
/// limits: a pod with some takes no pooled sandbox). The move is recorded before it is made,
/// and the old cgroup goes once empty. A failure is logged only: the pod runs, outside
/// kubelet's pod cgroup.
async fn adopt_pooled(config: &PodSandboxConfig, warm: &mut crate::pool::Warm) {
    let path = match cgroup::cgroups_path(cgroup_parent(config), &warm.ctr_id) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(pod = warm.pod_id, "{e}");
            return;
        }
    };
    let old: Vec<String> = warm.record.cgroups.clone();
    warm.record.cgroups.push(path.clone());
    if let Err(e) = record::save(&warm.dir, &warm.record) {
        tracing::warn!(pod = warm.pod_id, "saving the pod's record: {e}");
        return;
    }
    let pid = warm.pid;
    let moved = blocking(move || {
        cgroup::adopt(&path, pid).map_err(Error::io("adopting a pooled sandbox"))?;
        for c in old {
            cgroup::remove(&c).map_err(Error::io("removing the pool's cgroup"))?;
        }
        Ok(())
    })
    .await;
    match moved {
        Ok(()) => {
            let new = warm.record.cgroups.pop();
            warm.record.cgroups = new.into_iter().collect();
            if let Err(e) = record::save(&warm.dir, &warm.record) {
                tracing::warn!(pod = warm.pod_id, "saving the pod's record: {e}");
            }
        }
        Err(e) => tracing::warn!(pod = warm.pod_id, "{e}"),
    }
}

async fn attach_network(
    inner: &Arc<Inner>,
    id: &str,
    config: &PodSandboxConfig,
    ns: &Path,
) -> Result<()> {
    let (_, list) = cni::load(&inner.config.cni_conf_dir)?;
    let cni = CniRecord {
        list,
        args: cni_args(id, config),
        runtime_config: cni::port_mappings(&config.port_mappings),
        result: serde_json::Value::Null,
    };
    // Recorded before ADD: a crash half-way still gets its DEL.
    update_record(inner, id, |r| r.cni = Some(cni.clone()));
    let result = cni_add(inner, id, cni, ns).await?;
    let ips = cni::addresses(&result);
    if let Some(p) = inner.lock().pods.get_mut(id) {
        p.ips = ips;
    }
    update_record(inner, id, |r| {
        if let Some(c) = r.cni.as_mut() {
            c.result = result;
        }
    });
    Ok(())
}

/// CNI ADD of the chain `cni` records for pod `id` in `ns`; the result.
pub(crate) async fn cni_add(
    inner: &Arc<Inner>,
    id: &str,
    cni: CniRecord,
    ns: &Path,
) -> Result<serde_json::Value> {
    let (reaper, bins) = (Arc::clone(&inner.reaper), inner.config.cni_bin_dirs.clone());
    let (n, i) = (ns.to_path_buf(), id.to_string());
    blocking(move || {
        let inv = cni::Invocation {
            container_id: &i,
            netns: &n,
            args: &cni.args,
            runtime_config: &cni.runtime_config,
        };
        Ok(cni::add(&reaper, &bins, &cni.list, &inv)?)
    })
    .await
}

/// The pause container: the sandbox image booted by runsc as the pod's sandbox container.
async fn boot_sandbox(
    inner: &Arc<Inner>,
    id: &str,
    config: &PodSandboxConfig,
    ns: &Path,
) -> Result<()> {
    let image = inner
        .images
        .resolve_or_pull(&inner.config.sandbox_image)
        .await
        .map_err(|e| {
            Error::Precondition(format!(
                "the sandbox image (sandbox_image in [nanovisor]): {e}"
            ))
        })?;
    let bundle = inner.pods_dir().join(id).join(id);
    let key = rootfs::snapshot_key(id);
    update_record(inner, id, |r| {
        r.snapshots.push(key.clone());
        r.bundles.push(bundle.clone());
        r.runsc_ids.push(id.to_string());
    });
    rootfs::prepare(inner, &key, &image.chain_id, &bundle).await?;
    let container = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "POD".into(),
            attempt: 0,
        }),
        ..Default::default()
    };
    // The sandbox holds every container of the pod: it gets the pod-level limits.
    let limits = match sandbox_resources(config)? {
        Some(r) => resources::to_oci(&r).map_err(|e| Error::Invalid(e.to_string()))?,
        None => None,
    };
    let cgroups_path = record_cgroup(inner, id, config, id)?;
    let spec = spec::config(&spec::Input {
        image: &image,
        container: &container,
        pod: config,
        netns: ns,
        role: Role::Sandbox { pod: id },
        rootfs: &bundle.join("rootfs"),
        files: &crate::etc::existing(&inner.pods_dir().join(id)),
        resources: limits,
        cgroups_path: Some(cgroups_path),
    })
    .map_err(Error::Invalid)?;
    rootfs::write_config(&bundle, &spec)?;
    if let Some(acl) = &inner.config.default_acl_file {
        shim::bundle::add_default_acl(&bundle, acl).map_err(|e| Error::Invalid(e.to_string()))?;
    }
    let (pid, since) = rootfs::create(inner, id, &bundle, None, Stdio3::default()).await?;
    let (runsc, reaper, rid) = (
        Arc::clone(&inner.runsc),
        Arc::clone(&inner.reaper),
        id.to_string(),
    );
    blocking(move || {
        reaper.kick();
        Ok(runsc.start(&rid)?)
    })
    .await?;
    if let Some(p) = inner.lock().pods.get_mut(id) {
        p.sandbox = Some(id.to_string());
    }
    watch_sandbox(inner, id, pid, since);
    Ok(())
}

/// A booted pod whose sandbox process ends is not ready any more; `since` is the mark taken
/// before the `runsc create` that started it.
fn watch_sandbox(inner: &Arc<Inner>, id: &str, pid: u32, since: Mark) {
    let (inner, name) = (Arc::clone(inner), id.to_string());
    let id = name.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("pod-{pid}"))
        .spawn(move || {
            if inner
                .reaper
                .exits
                .wait_after(pid as i32, since, None)
                .is_some()
            {
                if let Some(p) = inner.lock().pods.get_mut(&id) {
                    p.ready = false;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("watching pod {name}: {e}");
    }
}

pub async fn stop(inner: &Arc<Inner>, id: &str) -> Result<()> {
    let id = resolve(inner, id)?;
    let op = match inner.lock().pods.get(&id) {
        Some(p) => Arc::clone(&p.op),
        None => return Err(Error::NotFound(format!("pod sandbox {id:?}"))),
    };
    let _guard = op.lock().await;
    let ctrs: Vec<String> = inner
        .lock()
        .ctrs
        .values()
        .filter(|c| c.pod_id == id)
        .map(|c| c.id.clone())
        .collect();
    for c in ctrs {
        containers::kill_now(inner, &c).await?;
    }
    let (kind, runsc_ids) = {
        let state = inner.lock();
        let p = state
            .pods
            .get(&id)
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id:?}")))?;
        (p.kind.clone(), p.record.runsc_ids.clone())
    };
    if kind == PodKind::Booted && runsc_ids.contains(&id) {
        rootfs::delete(inner, &id).await?;
    }
    // A pooled container no CreateContainer bound to still runs the sandbox.
    let unbound = inner.lock().pods.get_mut(&id).and_then(|p| p.pooled.take());
    if let Some(warm) = unbound {
        rootfs::delete(inner, &warm.ctr_id).await?;
    }
    // The pod's sandboxes have gone: their cgroups go now, as runc's do at containerd's task
    // delete, so that kubelet can remove its pod cgroup. One that still holds a process (a
    // restored sandbox whose container was created but never started runs until
    // RemoveContainer) stays recorded for RemovePodSandbox.
    remove_cgroups(inner, &id, |_| true).await;
    release_network(inner, &id).await?;
    if let Some(p) = inner.lock().pods.get_mut(&id) {
        p.ready = false;
    }
    Ok(())
}

/// Removes the recorded sandbox cgroups of pod `id` that `which` picks, once their
/// sandboxes have gone; one that cannot be removed is logged and stays in the record.
pub(crate) async fn remove_cgroups(inner: &Inner, id: &str, which: impl Fn(&str) -> bool) {
    let paths: Vec<String> = match inner.lock().pods.get(id) {
        Some(p) => p
            .record
            .cgroups
            .iter()
            .filter(|c| which(c))
            .cloned()
            .collect(),
        None => return,
    };
    for path in paths {
        if let Err(e) = remove_cgroup(inner, id, path).await {
            tracing::warn!(pod = id, "{e}");
        }
    }
}

/// CNI DEL and the network namespace's removal; done once.
async fn release_network(inner: &Arc<Inner>, id: &str) -> Result<()> {
    let (cni, ns) = {
        let state = inner.lock();
        let Some(p) = state.pods.get(id) else {
            return Ok(());
        };
        (p.record.cni.clone(), p.record.netns.clone())
    };
    release_network_of(inner, id, cni, ns.clone(), false).await?;
    update_record(inner, id, |r| {
        r.cni = None;
        r.netns = None;
    });
    Ok(())
}

/// CNI DEL, then the namespace's removal. When DEL fails the namespace is kept for the retry
/// (StopPodSandbox fails and kubelet calls it again), unless `finally`: a pod being forgotten
/// loses its namespace anyway and the DEL error is returned after.
async fn release_network_of(
    inner: &Arc<Inner>,
    id: &str,
    cni: Option<CniRecord>,
    ns: Option<PathBuf>,
    finally: bool,
) -> Result<()> {
    let (reaper, bins, id) = (
        Arc::clone(&inner.reaper),
        inner.config.cni_bin_dirs.clone(),
        id.to_string(),
    );
    blocking(move || {
        let deleted = if let (Some(c), Some(ns)) = (&cni, &ns) {
            let inv = cni::Invocation {
                container_id: &id,
                netns: ns,
                args: &c.args,
                runtime_config: &c.runtime_config,
            };
            let result = (!c.result.is_null()).then_some(&c.result);
            cni::del(&reaper, &bins, &c.list, &inv, result)
        } else {
            Ok(())
        };
        if deleted.is_err() && !finally {
            return deleted.map_err(Error::from);
        }
        if let Some(ns) = &ns {
            netns::remove(ns).map_err(Error::io(format!("removing {}", ns.display())))?;
        }
        deleted.map_err(Error::from)
    })
    .await
}

pub async fn remove(inner: &Arc<Inner>, id: &str) -> Result<()> {
    let id = match resolve(inner, id) {
        Ok(id) => id,
        // RemovePodSandbox of a pod that is gone succeeds (CRI: idempotent).
        Err(Error::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    stop(inner, &id).await?;
    let op = match inner.lock().pods.get(&id) {
        Some(p) => Arc::clone(&p.op),
        None => return Ok(()),
    };
    let _guard = op.lock().await;
    let ctrs: Vec<String> = inner
        .lock()
        .ctrs
        .values()
        .filter(|c| c.pod_id == id)
        .map(|c| c.id.clone())
        .collect();
    for c in ctrs {
        containers::remove_locked(inner, &c).await?;
    }
    release(inner, &id, false).await
}

/// Releases everything a pod's record names and forgets the pod.
/// Releases what a pod's record names and forgets the pod; when something could not be
/// released the pod is kept (RemovePodSandbox fails and is retried), unless `forget`.
async fn release(inner: &Arc<Inner>, id: &str, forget: bool) -> Result<()> {
    let (rec, dir) = {
        let state = inner.lock();
        match state.pods.get(id) {
            Some(p) => (p.record.clone(), p.dir.clone()),
            None => return Ok(()),
        }
    };
    let released = release_record(inner, &rec, &dir).await;
    if released.is_ok() || forget {
        inner.lock().pods.remove(id);
    }
    released
}

/// Releases everything `rec` names, each step tried whatever the others did; the first
/// error. The record (and its directory) goes only when all went, so a restart tries again.
pub(crate) async fn release_record(inner: &Arc<Inner>, rec: &PodRecord, dir: &Path) -> Result<()> {
    let mut first: Option<Error> = None;
    let mut note = |step: Result<()>| {
        if let Err(e) = step {
            tracing::warn!(pod = rec.id, "releasing: {e}");
            first.get_or_insert(e);
        }
    };
    for rid in rec.runsc_ids.iter().rev() {
        note(rootfs::delete(inner, rid).await);
    }
    // Only once runsc has deleted the sandboxes: a cgroup with a process in it stays.
    for path in rec.cgroups.clone() {
        note(
            blocking(move || {
                cgroup::remove(&path).map_err(Error::io("removing a sandbox's cgroup"))
            })
            .await,
        );
    }
    for (key, bundle) in rec.snapshots.iter().zip(&rec.bundles) {
        note(rootfs::release(inner, key, bundle).await);
    }
    note(release_network_of(inner, &rec.id, rec.cni.clone(), rec.netns.clone(), true).await);
    if let Some(e) = first {
        return Err(e);
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", dir.display()))(e))
        }
        _ => Ok(()),
    }
}

/// At start: every pod a previous run recorded is released (see record.rs).
pub async fn release_recorded(inner: &Arc<Inner>) {
    let Ok(dirs) = std::fs::read_dir(inner.pods_dir()) else {
        return;
    };
    for dir in dirs.flatten().map(|e| e.path()) {
        match record::load(&dir) {
            Ok(rec) => {
                tracing::info!(pod = rec.id, "releasing a pod of a previous run");
                if let Err(e) = release_record(inner, &rec, &dir).await {
                    tracing::warn!(pod = rec.id, "releasing a pod of a previous run: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Made before anything was recorded: nothing but the directory to release.
                let _ = std::fs::remove_dir_all(&dir);
            }
            Err(e) => tracing::warn!("{}: {e}", dir.display()),
        }
    }
}

pub fn status(inner: &Inner, id: &str, verbose: bool) -> Result<PodSandboxStatusResponse> {
    let id = resolve(inner, id)?;
    let state = inner.lock();
    let p = state
        .pods
        .get(&id)
        .ok_or_else(|| Error::NotFound(format!("pod sandbox {id:?}")))?;
    let namespaces = p
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone());
    let mut info = HashMap::new();
    if verbose {
        let detail = serde_json::json!({
            "netNamespacePath": p.netns,
            "sandboxContainer": p.sandbox,
            "image": match &p.kind { PodKind::Booted => serde_json::json!(inner.config.sandbox_image), PodKind::Restored { image } => serde_json::json!(image) },
            "runtimeHandler": crate::HANDLER,
        });
        info.insert("info".to_string(), detail.to_string());
    }
    Ok(PodSandboxStatusResponse {
        status: Some(PodSandboxStatus {
            id: p.id.clone(),
            metadata: p.config.metadata.clone(),
            state: p.cri_state(),
            created_at: p.created_at,
            network: Some(PodSandboxNetworkStatus {
                ip: p.ips.first().cloned().unwrap_or_default(),
                additional_ips: p
                    .ips
                    .iter()
                    .skip(1)
                    .map(|ip| PodIp { ip: ip.clone() })
                    .collect(),
            }),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: namespaces,
                }),
            }),
            labels: p.config.labels.clone(),
            annotations: p.config.annotations.clone(),
            runtime_handler: crate::HANDLER.into(),
        }),
        info,
        ..Default::default()
    })
}

pub fn list(inner: &Inner, filter: Option<PodSandboxFilter>) -> Vec<PodSandbox> {
    let f = filter.unwrap_or_default();
    let state = inner.lock();
    state
        .pods
        .values()
        .filter(|p| !p.creating)
        .filter(|p| filters::id_matches(&f.id, &p.id))
        .filter(|p| f.state.as_ref().is_none_or(|s| s.state == p.cri_state()))
        .filter(|p| filters::labels_match(&f.label_selector, &p.config.labels))
        .map(|p| p.view())
        .collect()
}

pub async fn stats(inner: &Arc<Inner>, id: &str) -> Result<PodSandboxStats> {
    let id = resolve(inner, id)?;
    let (attributes, sandbox, ctrs, cgroups) = {
        let state = inner.lock();
        let p = state
            .pods
            .get(&id)
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id:?}")))?;
        let ctrs: Vec<String> = state
            .ctrs
            .values()
            .filter(|c| c.pod_id == id)
            .map(|c| c.id.clone())
            .collect();
        (
            PodSandboxAttributes {
                id: p.id.clone(),
                metadata: p.config.metadata.clone(),
                labels: p.config.labels.clone(),
                annotations: p.config.annotations.clone(),
            },
            p.sandbox.clone(),
            ctrs,
            p.record.cgroups.clone(),
        )
    };
    let now = status::now_nanos();
    // The pod as the host sees it: its sandbox's cgroup (guest memory, the sentry and its
    // threads), when there is one; else the sentry's own figures for its guest.
    let host = blocking(move || Ok(cgroups.iter().find_map(|c| cgroup::usage(c))))
        .await
        .ok()
        .flatten();
    let data = match (host, sandbox) {
        (Some(_), _) | (None, None) => serde_json::Value::Null,
        (None, Some(s)) => containers::runsc_stats(inner, &s)
            .await
            .unwrap_or(serde_json::Value::Null),
    };
    let (cpu, memory) = match host {
        Some(u) => (
            crate::stats::cgroup_cpu(&u, now),
            crate::stats::cgroup_memory(&u, now),
        ),
        None => (
            crate::stats::cpu(&data, now),
            crate::stats::memory(&data, now),
        ),
    };
    let mut containers = Vec::new();
    for c in ctrs {
        if let Ok(s) = containers::stats(inner, &c).await {
            containers.push(s);
        }
    }
    Ok(PodSandboxStats {
        attributes: Some(attributes),
        linux: Some(LinuxPodSandboxStats {
            cpu: Some(cpu),
            memory: Some(memory),
            containers,
            ..Default::default()
        }),
        windows: None,
    })
}

pub async fn list_stats(
    inner: &Arc<Inner>,
    filter: Option<PodSandboxStatsFilter>,
) -> Vec<PodSandboxStats> {
    let f = filter.unwrap_or_default();
    let ids: Vec<String> = {
        let state = inner.lock();
        state
            .pods
            .values()
            .filter(|p| p.ready && filters::id_matches(&f.id, &p.id))
            .filter(|p| filters::labels_match(&f.label_selector, &p.config.labels))
            .map(|p| p.id.clone())
            .collect()
    };
    let mut out = Vec::new();
    for id in ids {
        if let Ok(s) = stats(inner, &id).await {
            out.push(s);
        }
    }
    out
}
