//! Pools of sandboxes restored ahead of time (`[[nanovisor.pool]]`), so that RunPodSandbox of a
//! pod annotated `dev.nanovisor.checkpoint-image: NAME` claims one in well under a millisecond
//! and the pod's container is already serving.
//!
//! A pooled sandbox ([`Warm`]) is everything a restored pod would get, made before the pod
//! exists: a network namespace attached with CNI, a snapshot of the pool's container image
//! mounted as a bundle's rootfs, and a sandbox restored from the checkpoint image over it with
//! `runsc create --checkpoint-image` and started (`runsc start`), its stdout and stderr kept in
//! memory (logs.rs) until a container claims them. Its record lives under `ROOT/pods/ID/` like a
//! pod's, so a restart releases it as it releases pods.
//!
//! Claiming: RunPodSandbox of an annotated pod takes a ready sandbox of the pool for that
//! checkpoint (if none is ready it restores as an unpooled pod would, at CreateContainer). The
//! pod's first CreateContainer whose image is the pool's image (same image id) binds to the
//! restored container: no runsc call; its buffered output goes to the container's log path;
//! StartContainer only marks it running. A container of another image joins the restored
//! sandbox as a pod's further container does. Each claim wakes the pool's filler, which
//! restores a replacement in the background.
//!
//! What differs for a pooled pod, since the sandbox was made before the pod was known:
//! - CNI ran ADD with `K8S_POD_INFRA_CONTAINER_ID` only, and without the pod's port mappings
//!   (`hostPort`: a pod that has some is not given a pooled sandbox): no `K8S_POD_NAME`, `K8S_POD_NAMESPACE`
//!   or `K8S_POD_UID` (plugins that key on them, e.g. for per-pod policy, do not see them; DEL
//!   gets the same arguments as ADD).
//! - The sandbox's hostname and the container's config.json are the pool's (hostname
//!   `nanovisor-pool`), not the pod's, and the pod's DNS config (/etc/resolv.conf) does not
//!   reach the pooled container (it does reach further containers of the pod); the process is
//!   the checkpoint's, as for any restored pod.
//! - The pool's sandbox has the default ACL (`default_acl_file`), if any. A pod with ACL
//!   annotations of its own (`dev.nanovisor.acl*`) is therefore never given a pooled sandbox:
//!   it is restored for itself, with its policy.
//! - The pooled sandbox is made in `/nanovisor/ID` with no limits (the pool sets none); a
//!   claim moves its process into `CGROUP_PARENT/ID` under the pod's `cgroup_parent`, still
//!   without limits, so that kubelet's pod cgroup bounds and counts it (memory it charged
//!   before the claim stays with the old cgroup, which goes). A pod whose pod-level resources
//!   limit memory or CPU is never given a pooled sandbox (its guest memory was sized when it
//!   was restored): it is restored for itself, with them.
//! - Output the app wrote before the claim is in the container's log, stamped when it was
//!   written; at most 1 MiB of it is kept.
//! - The container's `created_at`/`started_at` are the claim's times; a pooled sandbox that
//!   died before it was claimed shows up as an exited container.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_cri::v1::{ContainerConfig, ContainerMetadata, ImageSpec, PodSandboxConfig};
use shim::exits::Mark;
use shim::runsc::Stdio3;

use crate::config::PoolConfig;
use crate::error::{Error, Result};
use crate::images::ImageInfo;
use crate::logs::{Log, Stream};
use crate::record::{self, CniRecord, PodRecord};
use crate::spec::{self, Role};
use crate::{blocking, cni, names, netns, pods, rootfs, Inner};

/// How long a filler waits after a failed restore before it tries again.
const RETRY: Duration = Duration::from_secs(5);

/// A sandbox restored ahead of time, not yet claimed.
pub struct Warm {
    pub pod_id: String,
    pub ctr_id: String,
    pub checkpoint: PathBuf,
    pub dir: PathBuf,
    pub netns: PathBuf,
    pub ips: Vec<String>,
    pub record: PodRecord,
    pub bundle: PathBuf,
    pub snapshot: String,
    pub image: ImageInfo,
    pub spec: serde_json::Value,
    pub log: Arc<Log>,
    pub pid: u32,
    /// The exits mark taken before the `runsc create` that started `pid`.
    pub since: Mark,
}

#[derive(Default)]
pub struct Pools {
    ready: Mutex<HashMap<String, VecDeque<Warm>>>,
    /// Wakes the fillers (a claim, or shutdown).
    wake: tokio::sync::Notify,
    stopping: AtomicBool,
    fillers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Pools {
    /// Takes a ready sandbox of the pool for checkpoint `name`, if there is one.
    pub fn claim(&self, name: &str) -> Option<Warm> {
        let warm = self
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(name)?
            .pop_front();
        if warm.is_some() {
            self.wake.notify_waiters();
        }
        warm
    }

    /// How many sandboxes each pool has ready, by checkpoint name.
    pub fn ready(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = self
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, q)| (k.clone(), q.len()))
            .collect();
        out.sort();
        out
    }

    fn ready_count(&self, name: &str) -> usize {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map_or(0, VecDeque::len)
    }
}

/// Starts one filler task per configured pool.
pub fn start(inner: &Arc<Inner>) {
    let mut fillers = inner
        .pools
        .fillers
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for pool in inner.config.pool.clone() {
        let inner = Arc::clone(inner);
        fillers.push(tokio::spawn(async move { fill(inner, pool).await }));
    }
}

async fn fill(inner: Arc<Inner>, pool: PoolConfig) {
    loop {
        if inner.pools.stopping.load(Ordering::SeqCst) {
            return;
        }
        let notified = inner.pools.wake.notified();
        if inner.pools.ready_count(&pool.checkpoint) >= pool.size {
            notified.await;
            continue;
        }
        match make(&inner, &pool).await {
            Ok(warm) => {
                if inner.pools.stopping.load(Ordering::SeqCst) {
                    release(&inner, warm).await;
                    return;
                }
                tracing::info!(
                    pool = pool.checkpoint,
                    pod = warm.pod_id,
                    "pooled sandbox ready"
                );
                inner
                    .pools
                    .ready
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(pool.checkpoint.clone())
                    .or_default()
                    .push_back(warm);
            }
            Err(e) => {
                tracing::warn!(pool = pool.checkpoint, "restoring a pooled sandbox: {e}");
                let notified = inner.pools.wake.notified();
                if !inner.pools.stopping.load(Ordering::SeqCst) {
                    let _ = tokio::time::timeout(RETRY, notified).await;
                }
            }
        }
    }
}

/// Restores one sandbox for `pool`; on failure nothing of it is left.
async fn make(inner: &Arc<Inner>, pool: &PoolConfig) -> Result<Warm> {
    let annotated =
        serde_json::json!({"annotations": {pods::CHECKPOINT_ANNOTATION: pool.checkpoint}});
    let checkpoint = shim::bundle::checkpoint_image(&annotated, &inner.config.checkpoint_dir)
        .map_err(Error::Precondition)?
        .ok_or_else(|| Error::Internal("a pool without a checkpoint".into()))?;
    let image = inner.images.resolve_or_pull(&pool.image).await?;
    let pod_id = names::new_id().map_err(Error::io("making an id"))?;
    let ctr_id = names::new_id().map_err(Error::io("making an id"))?;
    let dir = inner.pods_dir().join(&pod_id);
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let mut rec = PodRecord {
        id: pod_id.clone(),
        ..Default::default()
    };
    let made = build(
        inner,
        pool,
        &checkpoint,
        &image,
        &pod_id,
        &ctr_id,
        &dir,
        &mut rec,
    )
    .await;
    match made {
        Ok(warm) => Ok(warm),
        Err(e) => {
            if let Err(c) = pods::release_record(inner, &rec, &dir).await {
                tracing::warn!(pod = pod_id, "cleaning up a failed pooled sandbox: {c}");
            }
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn build(
    inner: &Arc<Inner>,
    pool: &PoolConfig,
    checkpoint: &std::path::Path,
    image: &ImageInfo,
    pod_id: &str,
    ctr_id: &str,
    dir: &std::path::Path,
    rec: &mut PodRecord,
) -> Result<Warm> {
    let save = |rec: &PodRecord| {
        record::save(dir, rec).map_err(Error::io(format!("saving the record in {}", dir.display())))
    };
    let ns_name = names::netns_name().map_err(Error::io("naming a network namespace"))?;
    let ns = PathBuf::from(netns::NETNS_DIR).join(&ns_name);
    rec.netns = Some(ns.clone());
    save(rec)?;
    blocking(move || netns::create(&ns_name).map_err(Error::io("creating a network namespace")))
        .await?;
    let (_, list) = cni::load(&inner.config.cni_conf_dir)?;
    // The pod is not known yet: no K8S_POD_NAME (see the module comment).
    let cni = CniRecord {
        list,
        args: vec![("K8S_POD_INFRA_CONTAINER_ID".to_string(), pod_id.to_string())],
        runtime_config: serde_json::Value::Null,
        result: serde_json::Value::Null,
    };
    rec.cni = Some(cni.clone());
    save(rec)?;
    let result = pods::cni_add(inner, pod_id, cni, &ns).await?;
    let ips = cni::addresses(&result);
    if let Some(c) = rec.cni.as_mut() {
        c.result = result;
    }
    let bundle = dir.join(ctr_id);
    let snapshot = rootfs::snapshot_key(ctr_id);
    rec.snapshots.push(snapshot.clone());
    rec.bundles.push(bundle.clone());
    save(rec)?;
    rootfs::prepare(inner, &snapshot, &image.chain_id, &bundle).await?;
    let container = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "pool".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: pool.image.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = PodSandboxConfig {
        hostname: "nanovisor-pool".into(),
        ..Default::default()
    };
    // No pod, no kubelet parent: runsc's own `/nanovisor/ID`, without limits (see the module
    // comment), recorded before runsc makes it.
    let cgroups_path = crate::cgroup::cgroups_path("", ctr_id).map_err(Error::Internal)?;
    rec.cgroups.push(cgroups_path.clone());
    save(rec)?;
    let spec = spec::config(&spec::Input {
        image,
        container: &container,
        pod: &pod,
        netns: &ns,
        role: Role::Own,
        rootfs: &bundle.join("rootfs"),
        files: &[],
        resources: None,
        cgroups_path: Some(cgroups_path),
    })
    .map_err(Error::Invalid)?;
    rootfs::write_config(&bundle, &spec)?;
    if let Some(acl) = &inner.config.default_acl_file {
        shim::bundle::add_default_acl(&bundle, acl).map_err(|e| Error::Invalid(e.to_string()))?;
    }
    let log = Log::new(None).map_err(Error::io("making a log"))?;
    let (out_r, out_w) = rootfs::pipe()?;
    let (err_r, err_w) = rootfs::pipe()?;
    rec.runsc_ids.push(ctr_id.to_string());
    save(rec)?;
    let stdio = Stdio3 {
        stdin: None,
        stdout: Some(out_w),
        stderr: Some(err_w),
    };
    let (pid, since) = rootfs::create(
        inner,
        ctr_id,
        &bundle,
        Some(checkpoint.to_path_buf()),
        stdio,
    )
    .await?;
    log.pump(Stream::Stdout, out_r.into());
    log.pump(Stream::Stderr, err_r.into());
    let (runsc, reaper, rid) = (
        Arc::clone(&inner.runsc),
        Arc::clone(&inner.reaper),
        ctr_id.to_string(),
    );
    blocking(move || {
        reaper.kick();
        Ok(runsc.start(&rid)?)
    })
    .await?;
    if let (Some(w), Some(ip)) = (&pool.warm_up, ips.first()) {
        warm_up(ip, w).await;
    }
    Ok(Warm {
        pod_id: pod_id.to_string(),
        ctr_id: ctr_id.to_string(),
        checkpoint: checkpoint.to_path_buf(),
        dir: dir.to_path_buf(),
        netns: ns,
        ips,
        record: rec.clone(),
        bundle,
        snapshot,
        image: image.clone(),
        spec,
        log,
        pid,
        since,
    })
}

/// How long a warm-up request may take.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP/1.0 GET to the restored app, its answer read and dropped. A failure is logged
/// only: the sandbox is still good, just colder.
async fn warm_up(ip: &str, w: &crate::config::WarmUp) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let request = async {
        let mut s = tokio::net::TcpStream::connect((ip, w.port)).await?;
        s.write_all(format!("GET {} HTTP/1.0\r\nHost: {ip}\r\n\r\n", w.path).as_bytes())
            .await?;
        let mut sink = Vec::new();
        (&mut s).take(1 << 20).read_to_end(&mut sink).await?;
        Ok::<_, std::io::Error>(())
    };
    match tokio::time::timeout(WARM_UP_TIMEOUT, request).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("warming up {ip}:{}: {e}", w.port),
        Err(_) => tracing::warn!(
            "warming up {ip}:{}: no answer within {WARM_UP_TIMEOUT:?}",
            w.port
        ),
    }
}

async fn release(inner: &Arc<Inner>, warm: Warm) {
    if let Err(e) = pods::release_record(inner, &warm.record, &warm.dir).await {
        tracing::warn!(pod = warm.pod_id, "releasing a pooled sandbox: {e}");
    }
}

/// Stops the fillers (one that is restoring a sandbox finishes and releases it) and releases
/// every unclaimed sandbox.
pub async fn shutdown(inner: &Arc<Inner>) {
    inner.pools.stopping.store(true, Ordering::SeqCst);
    inner.pools.wake.notify_waiters();
    let fillers: Vec<_> = inner
        .pools
        .fillers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain(..)
        .collect();
    for f in fillers {
        let _ = f.await;
    }
    let all: Vec<Warm> = inner
        .pools
        .ready
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain()
        .flat_map(|(_, q)| q)
        .collect();
    for warm in all {
        release(inner, warm).await;
    }
}
