//! A container's bundle on disk: its root file system (a snapshot of its image, mounted at
//! `BUNDLE/rootfs`), its config.json, and the runsc container made from it.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shim::exits::Mark;
use shim::runsc::Stdio3;

use crate::error::{Error, Result};
use crate::{blocking, Inner};

/// The snapshot key of a container's root file system.
pub fn snapshot_key(id: &str) -> String {
    format!("nanovisor-cri/{id}")
}

/// Prepares snapshot `key` over `chain_id` and mounts it at `bundle/rootfs`.
pub async fn prepare(inner: &Arc<Inner>, key: &str, chain_id: &str, bundle: &Path) -> Result<()> {
    let mounts = inner.images.prepare(key, chain_id).await?;
    let target = bundle.join("rootfs");
    let mounted = blocking(move || {
        std::fs::create_dir_all(&target)
            .map_err(Error::io(format!("creating {}", target.display())))?;
        for m in &mounts {
            crate::mount::mount_one(&target, &m.r#type, &m.source, &m.options)
                .map_err(Error::Internal)?;
        }
        Ok(())
    })
    .await;
    if let Err(e) = mounted {
        let _ = inner.images.remove(key).await;
        return Err(e);
    }
    Ok(())
}

/// Unmounts `bundle/rootfs` and removes snapshot `key` and the bundle.
pub async fn release(inner: &Arc<Inner>, key: &str, bundle: &Path) -> Result<()> {
    let b = bundle.to_path_buf();
    blocking(move || {
        shim::bundle::unmount_rootfs(&b);
        Ok(())
    })
    .await?;
    inner.images.remove(key).await?;
    match std::fs::remove_dir_all(bundle) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", bundle.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Writes config.json into the bundle.
pub fn write_config(bundle: &Path, spec: &serde_json::Value) -> Result<()> {
    let path = bundle.join("config.json");
    let text = serde_json::to_vec_pretty(spec).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(&path, text).map_err(Error::io(format!("writing {}", path.display())))
}

/// A pipe: (read end, write end), both close-on-exec.
pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Internal(format!("creating a pipe: {e}")))
}

/// `runsc create` (restoring from `image` if given) with `stdio`; the pid that stands for
/// the container (its sandbox process, or the waiter of a container that joined a sandbox),
/// and the exits mark taken before `runsc create` started it, to wait for it with
/// ([`shim::exits::Exits::wait_after`]).
pub async fn create(
    inner: &Arc<Inner>,
    id: &str,
    bundle: &Path,
    image: Option<PathBuf>,
    stdio: Stdio3,
) -> Result<(u32, Mark)> {
    let (runsc, reaper) = (Arc::clone(&inner.runsc), Arc::clone(&inner.reaper));
    let (id, bundle) = (id.to_string(), bundle.to_path_buf());
    blocking(move || {
        let pid_file = bundle.join("init.pid");
        let since = reaper.exits.mark();
        reaper.kick();
        runsc.create(&id, &bundle, &pid_file, image.as_deref(), None, stdio)?;
        let text = std::fs::read_to_string(&pid_file)
            .map_err(Error::io(format!("reading {}", pid_file.display())))?;
        let pid = text
            .trim()
            .parse()
            .map_err(|_| Error::Internal(format!("{}: not a pid: {text:?}", pid_file.display())))?;
        Ok((pid, since))
    })
    .await
}

/// `runsc delete --force`, for cleanup: a container runsc does not know is fine.
pub async fn delete(inner: &Arc<Inner>, id: &str) -> Result<()> {
    let (runsc, reaper, id) = (
        Arc::clone(&inner.runsc),
        Arc::clone(&inner.reaper),
        id.to_string(),
    );
    blocking(move || {
        reaper.kick();
        match runsc.delete(&id) {
            Ok(()) => Ok(()),
            Err(e)
                if e.to_string().contains("does not exist")
                    || e.to_string().contains("not found") =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    })
    .await
}
