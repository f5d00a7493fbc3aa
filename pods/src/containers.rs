//! Containers of our pods: Create (the image's snapshot, config.json, `runsc create`: joining
//! the pod's sandbox, or for the first container of a pod annotated with a checkpoint image,
//! restoring the sandbox from that image over the container's rootfs), Start, Stop (SIGTERM,
//! then SIGKILL after the timeout), Remove, status, list, logs and stats.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_cri::v1::*;
use shim::exits::Mark;
use shim::runsc::Stdio3;

use crate::error::{Error, Result};
use crate::logs::{Log, Stream};
use crate::model::{Ctr, CtrState, PodKind};
use crate::spec::{self, Role};
use crate::{blocking, filters, names, pods, resources, rootfs, status, Inner};

/// How long a container has to go after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The container `id` names (an id or a unique prefix of one).
pub fn resolve(inner: &Inner, id: &str) -> Result<String> {
    let state = inner.lock();
    filters::resolve(id, state.ctrs.keys())
        .ok_or_else(|| Error::NotFound(format!("container {id:?}")))
}

fn pod_op(inner: &Inner, pod: &str) -> Result<Arc<tokio::sync::Mutex<()>>> {
    inner
        .lock()
        .pods
        .get(pod)
        .map(|p| Arc::clone(&p.op))
        .ok_or_else(|| Error::NotFound(format!("pod sandbox {pod:?}")))
}

fn pod_of(inner: &Inner, ctr: &str) -> Result<String> {
    inner
        .lock()
        .ctrs
        .get(ctr)
        .map(|c| c.pod_id.clone())
        .ok_or_else(|| Error::NotFound(format!("container {ctr:?}")))
}

pub async fn create(
    inner: &Arc<Inner>,
    r: CreateContainerRequest,
) -> Result<CreateContainerResponse> {
    let pod_id = pods::resolve(inner, &r.pod_sandbox_id)?;
    let config = r
        .config
        .ok_or_else(|| Error::Invalid("CreateContainer: no config".into()))?;
    let name = config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    if name.is_empty() {
        return Err(Error::Invalid("container config: no metadata name".into()));
    }
    let log_rel = std::path::Path::new(&config.log_path);
    if log_rel.is_absolute()
        || log_rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(Error::Invalid(format!(
            "log path {:?} must stay inside the pod's log directory",
            config.log_path
        )));
    }
    if config.tty {
        return Err(Error::Unimplemented(
            "containers with a terminal are not supported yet".into(),
        ));
    }
    let reference = config
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .unwrap_or_default();
    if reference.is_empty() {
        return Err(Error::Invalid("container config: no image".into()));
    }
    // Checked before anything is made: InvalidArgument names what cannot be honoured.
    let own_resources = match config.linux.as_ref().and_then(|l| l.resources.as_ref()) {
        Some(r) => {
            resources::to_oci(r).map_err(|e| Error::Invalid(format!("container {name:?}: {e}")))?
        }
        None => None,
    };
    let op = pod_op(inner, &pod_id)?;
    let _guard = op.lock().await;
    let (pod_config, kind, sandbox, netns, dir, ready) = {
        let state = inner.lock();
        let p = state
            .pods
            .get(&pod_id)
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {pod_id:?}")))?;
        (
            p.config.clone(),
            p.kind.clone(),
            p.sandbox.clone(),
            p.netns.clone(),
            p.dir.clone(),
            p.ready,
        )
    };
    if !ready {
        return Err(Error::Precondition(format!(
            "pod sandbox {pod_id} is not ready"
        )));
    }
    let dup = inner.lock().ctrs.values().any(|c| {
        c.pod_id == pod_id
            && c.config.metadata.as_ref().is_some_and(|m| {
                m.name == name && Some(m.attempt) == config.metadata.as_ref().map(|m| m.attempt)
            })
    });
    if dup {
        return Err(Error::Precondition(format!(
            "pod {pod_id} already has a container {name:?} (same attempt)"
        )));
    }
    let image = inner.images.resolve(&reference).await?;
    if let Some(id) = bind_pooled(inner, &pod_id, &config, &pod_config, &image)? {
        return Ok(CreateContainerResponse { container_id: id });
    }
    let (role, restore) = match (&kind, &sandbox) {
        (PodKind::Booted, _) => (Role::Member { sandbox: &pod_id }, None),
        (PodKind::Restored { image }, None) => (Role::Own, Some(image.clone())),
        (PodKind::Restored { .. }, Some(s)) => (Role::Member { sandbox: s }, None),
    };
    let id = names::new_id().map_err(Error::io("making an id"))?;
    // A container that restores the pod's sandbox holds the whole pod: the pod-level limits
    // and cgroup, or its own limits when the pod gives none (resources.rs). A container that
    // joins a sandbox keeps its own in config.json, where runsc applies none.
    let (limits, cgroups_path) = match role {
        Role::Own => {
            let limits = match pods::sandbox_resources(&pod_config)? {
                Some(r) => resources::to_oci(&r).map_err(|e| Error::Invalid(e.to_string()))?,
                None => own_resources,
            };
            (
                limits,
                Some(pods::record_cgroup(inner, &pod_id, &pod_config, &id)?),
            )
        }
        _ => (own_resources, None),
    };
    let bundle = dir.join(&id);
    let key = rootfs::snapshot_key(&id);
    pods::update_record(inner, &pod_id, |r| {
        r.snapshots.push(key.clone());
        r.bundles.push(bundle.clone());
    });
    let forget = |inner: &Arc<Inner>| {
        pods::update_record(inner, &pod_id, |r| {
            r.snapshots.retain(|k| k != &key);
            r.bundles.retain(|b| b != &bundle);
            r.runsc_ids.retain(|i| i != &id);
        })
    };
    if let Err(e) = rootfs::prepare(inner, &key, &image.chain_id, &bundle).await {
        forget(inner);
        if let Some(path) = cgroups_path {
            pods::update_record(inner, &pod_id, |r| r.cgroups.retain(|c| c != &path));
        }
        return Err(e);
    }
    let made = async {
        let spec = spec::config(&spec::Input {
            image: &image,
            container: &config,
            pod: &pod_config,
            netns: &netns,
            role,
            rootfs: &bundle.join("rootfs"),
            files: &crate::etc::existing(&dir),
            resources: limits.clone(),
            cgroups_path: cgroups_path.clone(),
        })
        .map_err(Error::Invalid)?;
        rootfs::write_config(&bundle, &spec)?;
        if let (Role::Own, Some(acl)) = (role, &inner.config.default_acl_file) {
            shim::bundle::add_default_acl(&bundle, acl)
                .map_err(|e| Error::Invalid(e.to_string()))?;
        }
        let log_path = (!pod_config.log_directory.is_empty() && !config.log_path.is_empty())
            .then(|| PathBuf::from(&pod_config.log_directory).join(&config.log_path));
        let log = Log::new(log_path.clone()).map_err(Error::io("opening the container's log"))?;
        let (out_r, out_w) = rootfs::pipe()?;
        let (err_r, err_w) = rootfs::pipe()?;
        pods::update_record(inner, &pod_id, |r| r.runsc_ids.push(id.clone()));
        let stdio = Stdio3 {
            stdin: None,
            stdout: Some(out_w),
            stderr: Some(err_w),
        };
        let (pid, since) = rootfs::create(inner, &id, &bundle, restore.clone(), stdio).await?;
        log.pump(Stream::Stdout, out_r.into());
        log.pump(Stream::Stderr, err_r.into());
        Ok::<_, Error>((spec, log, log_path, pid, since))
    }
    .await;
    let (spec, log, log_path, pid, since) = match made {
        Ok(m) => m,
        Err(e) => {
            let _ = rootfs::delete(inner, &id).await;
            if let Err(c) = rootfs::release(inner, &key, &bundle).await {
                tracing::warn!(container = id, "cleaning up a failed create: {c}");
            }
            if let Some(path) = cgroups_path {
                // A boot that failed leaves its cgroup; kept in the record if it cannot go.
                if let Err(c) = pods::remove_cgroup(inner, &pod_id, path).await {
                    tracing::warn!(container = id, "cleaning up a failed create: {c}");
                }
            }
            forget(inner);
            return Err(e);
        }
    };
    {
        let mut state = inner.lock();
        if restore.is_some() {
            if let Some(p) = state.pods.get_mut(&pod_id) {
                p.sandbox = Some(id.clone());
            }
        }
        state.ctrs.insert(
            id.clone(),
            Ctr {
                id: id.clone(),
                pod_id: pod_id.clone(),
                config,
                image,
                bundle,
                snapshot: key,
                spec,
                log,
                log_path,
                state: CtrState::Created,
                created_at: status::now_nanos(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                exited: false,
                pid,
                prestarted: false,
                start_error: None,
                oom_killed: false,
            },
        );
    }
    watch(inner, &id, pid, since);
    Ok(CreateContainerResponse { container_id: id })
}

/// Binds a pod's CreateContainer to its pooled container (pool.rs) when the image is the
/// pool's; the container id, or None when this is not that container.
fn bind_pooled(
    inner: &Arc<Inner>,
    pod_id: &str,
    config: &ContainerConfig,
    pod_config: &PodSandboxConfig,
    image: &crate::images::ImageInfo,
) -> Result<Option<String>> {
    let warm = {
        let mut state = inner.lock();
        let Some(p) = state.pods.get_mut(pod_id) else {
            return Ok(None);
        };
        match &p.pooled {
            Some(w) if w.image.id == image.id => p.pooled.take(),
            _ => return Ok(None),
        }
    };
    let Some(warm) = warm else { return Ok(None) };
    let log_path = (!pod_config.log_directory.is_empty() && !config.log_path.is_empty())
        .then(|| PathBuf::from(&pod_config.log_directory).join(&config.log_path));
    if let Some(path) = &log_path {
        if let Err(e) = warm.log.set_path(path.clone()) {
            let message = format!("opening the log {}: {e}", path.display());
            // Not bound: the pod keeps it for a retry.
            if let Some(p) = inner.lock().pods.get_mut(pod_id) {
                p.pooled = Some(warm);
            }
            return Err(Error::Internal(message));
        }
    }
    let now = status::now_nanos();
    let id = warm.ctr_id.clone();
    let (pid, since) = (warm.pid, warm.since);
    inner.lock().ctrs.insert(
        id.clone(),
        Ctr {
            id: id.clone(),
            pod_id: pod_id.to_string(),
            config: config.clone(),
            image: image.clone(),
            bundle: warm.bundle.clone(),
            snapshot: warm.snapshot.clone(),
            spec: warm.spec.clone(),
            log: Arc::clone(&warm.log),
            log_path,
            state: CtrState::Created,
            created_at: now,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            exited: false,
            pid,
            prestarted: true,
            start_error: None,
            oom_killed: false,
        },
    );
    watch(inner, &id, pid, since);
    Ok(Some(id))
}

/// Records the container's exit when the pid that stands for it exits; `since` is the mark
/// taken before the `runsc create` that started it.
fn watch(inner: &Arc<Inner>, id: &str, pid: u32, since: Mark) {
    let (inner, name) = (Arc::clone(inner), id.to_string());
    let id = name.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("ctr-{pid}"))
        .spawn(move || {
            let Some(exit) = inner.reaper.exits.wait_after(pid as i32, since, None) else {
                return;
            };
            // Asked before the exit is recorded, so that no status shows the container
            // exited with reason `Error` first. Only a SIGKILL can be an OOM kill.
            let oom_killed = exit.status == 128 + libc::SIGKILL
                && inner.runsc.oom_killed(&id).unwrap_or_else(|e| {
                    tracing::warn!("container {id}: asking about an OOM kill: {e}");
                    false
                });
            if let Some(c) = inner.lock().ctrs.get_mut(&id) {
                c.oom_killed = oom_killed;
                c.exited = true;
                c.exit_code = exit.status;
                c.finished_at = status::unix_nanos(exit.at);
                c.state = CtrState::Exited;
            }
        });
    if let Err(e) = spawned {
        tracing::error!("watching container {name}: {e}");
    }
}

pub async fn start(inner: &Arc<Inner>, id: &str) -> Result<()> {
    let id = resolve(inner, id)?;
    let op = pod_op(inner, &pod_of(inner, &id)?)?;
    let _guard = op.lock().await;
    let (state, prestarted) = match inner.lock().ctrs.get(&id) {
        Some(c) => (Some(c.state), c.prestarted),
        None => (None, false),
    };
    match state {
        Some(CtrState::Created) if prestarted => {
            if let Some(c) = inner.lock().ctrs.get_mut(&id) {
                c.started_at = status::now_nanos();
                if !c.exited {
                    c.state = CtrState::Running;
                }
            }
            return Ok(());
        }
        Some(CtrState::Created) => {}
        Some(s) => {
            return Err(Error::Precondition(format!(
                "container {id} is {s:?}, not created"
            )))
        }
        None => return Err(Error::NotFound(format!("container {id:?}"))),
    }
    let (runsc, reaper, rid) = (
        Arc::clone(&inner.runsc),
        Arc::clone(&inner.reaper),
        id.clone(),
    );
    let started = blocking(move || {
        reaper.kick();
        Ok(runsc.start(&rid)?)
    })
    .await;
    if let Err(e) = started {
        // The container is over: its waiter exits and the watcher records the exit.
        if let Some(c) = inner.lock().ctrs.get_mut(&id) {
            c.start_error = Some(e.to_string());
        }
        return Err(e);
    }
    if let Some(c) = inner.lock().ctrs.get_mut(&id) {
        c.started_at = status::now_nanos();
        if !c.exited {
            c.state = CtrState::Running;
        }
    }
    Ok(())
}

async fn signal(inner: &Arc<Inner>, id: &str, signal: i32) {
    let (runsc, reaper, rid) = (
        Arc::clone(&inner.runsc),
        Arc::clone(&inner.reaper),
        id.to_string(),
    );
    let sent = blocking(move || {
        reaper.kick();
        Ok(runsc.kill(&rid, signal as u32, false)?)
    })
    .await;
    if let Err(e) = sent {
        // It may have exited meanwhile; the wait that follows tells.
        tracing::debug!(container = id, "signal {signal}: {e}");
    }
}

/// Waits until the container's exit is recorded; whether it was within `limit`.
async fn wait_exit(inner: &Inner, id: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let exited = inner.lock().ctrs.get(id).is_none_or(|c| c.exited);
        if exited {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn stop(inner: &Arc<Inner>, id: &str, timeout: i64) -> Result<()> {
    let id = resolve(inner, id)?;
    let op = pod_op(inner, &pod_of(inner, &id)?)?;
    let _guard = op.lock().await;
    let running = inner
        .lock()
        .ctrs
        .get(&id)
        .is_some_and(|c| c.state == CtrState::Running);
    if !running {
        return Ok(());
    }
    if timeout > 0 {
        signal(inner, &id, libc::SIGTERM).await;
        if wait_exit(inner, &id, Duration::from_secs(timeout.unsigned_abs())).await {
            return Ok(());
        }
    }
    kill_now(inner, &id).await
}

/// SIGKILL to a running container, and its exit awaited.
pub async fn kill_now(inner: &Arc<Inner>, id: &str) -> Result<()> {
    let running = inner
        .lock()
        .ctrs
        .get(id)
        .is_some_and(|c| c.state == CtrState::Running);
    if !running {
        return Ok(());
    }
    signal(inner, id, libc::SIGKILL).await;
    if wait_exit(inner, id, KILL_TIMEOUT).await {
        Ok(())
    } else {
        Err(Error::Timeout(format!(
            "container {id} did not exit within {KILL_TIMEOUT:?} of SIGKILL"
        )))
    }
}

pub async fn remove(inner: &Arc<Inner>, id: &str) -> Result<()> {
    let id = match resolve(inner, id) {
        Ok(id) => id,
        // RemoveContainer of a container that is gone succeeds (CRI: idempotent).
        Err(Error::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let op = pod_op(inner, &pod_of(inner, &id)?)?;
    let _guard = op.lock().await;
    remove_locked(inner, &id).await
}

/// Remove with the pod's op lock held.
pub async fn remove_locked(inner: &Arc<Inner>, id: &str) -> Result<()> {
    kill_now(inner, id).await?;
    let (pod_id, key, bundle) = {
        let state = inner.lock();
        let Some(c) = state.ctrs.get(id) else {
            return Ok(());
        };
        (c.pod_id.clone(), c.snapshot.clone(), c.bundle.clone())
    };
    rootfs::delete(inner, id).await?;
    rootfs::release(inner, &key, &bundle).await?;
    pods::update_record(inner, &pod_id, |r| {
        r.runsc_ids.retain(|i| i != id);
        r.snapshots.retain(|k| k != &key);
        r.bundles.retain(|b| b != &bundle);
    });
    let was_sandbox = {
        let mut state = inner.lock();
        state.ctrs.remove(id);
        match state.pods.get_mut(&pod_id) {
            Some(p) if p.sandbox.as_deref() == Some(id) => {
                p.sandbox = None;
                true
            }
            _ => false,
        }
    };
    // The pod's sandbox (a restored one) went with this container: so does its cgroup.
    if was_sandbox {
        pods::remove_cgroups(inner, &pod_id, |c| crate::cgroup::is_for(c, id)).await;
    }
    Ok(())
}

pub fn list(inner: &Inner, filter: Option<ContainerFilter>) -> Vec<Container> {
    let f = filter.unwrap_or_default();
    let state = inner.lock();
    state
        .ctrs
        .values()
        .filter(|c| filters::id_matches(&f.id, &c.id))
        .filter(|c| filters::id_matches(&f.pod_sandbox_id, &c.pod_id))
        .filter(|c| {
            f.state
                .as_ref()
                .is_none_or(|s| s.state == c.state.cri() as i32)
        })
        .filter(|c| filters::labels_match(&f.label_selector, &c.config.labels))
        .map(|c| c.view())
        .collect()
}

pub fn status(inner: &Inner, id: &str, verbose: bool) -> Result<ContainerStatusResponse> {
    let id = resolve(inner, id)?;
    let state = inner.lock();
    let c = state
        .ctrs
        .get(&id)
        .ok_or_else(|| Error::NotFound(format!("container {id:?}")))?;
    let mut info = std::collections::HashMap::new();
    if verbose {
        let detail = serde_json::json!({"pid": c.pid, "bundle": c.bundle, "snapshotKey": c.snapshot, "runtimeSpec": c.spec});
        info.insert("info".to_string(), detail.to_string());
    }
    Ok(ContainerStatusResponse {
        status: Some(c.status()),
        info,
    })
}

pub fn reopen_log(inner: &Inner, id: &str) -> Result<()> {
    let id = resolve(inner, id)?;
    let log = {
        let state = inner.lock();
        let c = state
            .ctrs
            .get(&id)
            .ok_or_else(|| Error::NotFound(format!("container {id:?}")))?;
        if c.state != CtrState::Running {
            return Err(Error::Precondition(format!(
                "container {id} is not running"
            )));
        }
        Arc::clone(&c.log)
    };
    log.reopen()
        .map_err(Error::io(format!("reopening the log of container {id}")))
}

/// `runsc events --stats` of a runsc container.
pub async fn runsc_stats(inner: &Arc<Inner>, id: &str) -> Result<serde_json::Value> {
    let (runsc, reaper, rid) = (
        Arc::clone(&inner.runsc),
        Arc::clone(&inner.reaper),
        id.to_string(),
    );
    blocking(move || {
        reaper.kick();
        Ok(runsc.stats(&rid)?)
    })
    .await
}

pub async fn stats(inner: &Arc<Inner>, id: &str) -> Result<ContainerStats> {
    let id = resolve(inner, id)?;
    let (attributes, running) = {
        let state = inner.lock();
        let c = state
            .ctrs
            .get(&id)
            .ok_or_else(|| Error::NotFound(format!("container {id:?}")))?;
        (c.attributes(), c.state == CtrState::Running)
    };
    let data = if running {
        runsc_stats(inner, &id).await?
    } else {
        serde_json::Value::Null
    };
    let now = status::now_nanos();
    Ok(ContainerStats {
        attributes: Some(attributes),
        cpu: Some(crate::stats::cpu(&data, now)),
        memory: Some(crate::stats::memory(&data, now)),
        writable_layer: None,
        swap: None,
    })
}

pub async fn list_stats(
    inner: &Arc<Inner>,
    filter: Option<ContainerStatsFilter>,
) -> Vec<ContainerStats> {
    let f = filter.unwrap_or_default();
    let ids: Vec<String> = {
        let state = inner.lock();
        state
            .ctrs
            .values()
            .filter(|c| filters::id_matches(&f.id, &c.id))
            .filter(|c| filters::id_matches(&f.pod_sandbox_id, &c.pod_id))
            .filter(|c| filters::labels_match(&f.label_selector, &c.config.labels))
            .map(|c| c.id.clone())
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
