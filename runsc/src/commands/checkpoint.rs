//! `runsc checkpoint --image-path DIR [--leave-running] ID`: save the whole sandbox of a
//! running container as a checkpoint image (see `checkpoints/` for the format).
//!
//! The sandbox has no view of the host's file tree, so it writes into two memfds this
//! command passes it (guest memory at guest physical offsets, and the kernel state);
//! this command then writes the image: memory.img sparse (only the memfd's data
//! regions are read), kernel.state, and the manifest with their digests. Without
//! `--leave-running`, the container's processes end once the checkpoint is taken, as
//! runc's and gVisor's do.

use std::fs::File;
use std::os::fd::AsFd as _;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;

use crate::commands::{load, GlobalOpts};
use crate::container::Container;

#[derive(Args)]
pub struct CheckpointArgs {
    /// The directory to write the image to (replaced if it holds one).
    #[arg(long, value_name = "DIR")]
    image_path: PathBuf,
    /// Keep the container running after the checkpoint.
    #[arg(long)]
    leave_running: bool,
    /// Accepted for runc compatibility (the image holds everything: no work dir).
    #[arg(long, hide = true, value_name = "DIR")]
    work_path: Option<PathBuf>,
    /// The container id.
    id: String,
}

pub fn run(args: CheckpointArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    let c = load(global, &args.id)?;
    let _lock = c.dir.lock()?;
    let (status, _) = c.status_locked();
    if !status.can_pause() {
        bail!("container not running");
    }
    let written = take(&c, args.leave_running, |guest_bytes| {
        checkpoints::ImageWriter::create_replacing(&args.image_path, sentry::VERSION, guest_bytes)
            .with_context(|| format!("creating the image {}", args.image_path.display()))
    })?;
    tracing::info!(
        image = %written.dir.display(),
        digest = %written.digest,
        "checkpoint written"
    );
    Ok(0)
}

/// Checkpoint container `c`'s sandbox into the image writer `create` makes for its guest
/// memory size; the image written.
pub fn take(
    c: &Container,
    leave_running: bool,
    create: impl FnOnce(u64) -> anyhow::Result<checkpoints::ImageWriter>,
) -> anyhow::Result<checkpoints::WrittenImage> {
    let memory = memfd("nanovisor-checkpoint-memory")?;
    let state = memfd("nanovisor-checkpoint-state")?;
    let taken = c
        .control()?
        .checkpoint(leave_running, memory.as_fd(), state.as_fd())?;
    if taken.state_bytes > checkpoints::KERNEL_STATE_MAX_BYTES {
        bail!(
            "the sandbox's kernel state is {} bytes, more than an image may hold ({})",
            taken.state_bytes,
            checkpoints::KERNEL_STATE_MAX_BYTES
        );
    }
    let mut writer = create(taken.guest_memory_bytes)?;
    writer.set_source("container", c.id());
    if let Some(rootfs) = c.state.as_ref().map(|s| s.rootfs.display().to_string()) {
        writer.set_source("rootfs", rootfs);
    }
    copy_memory(&memory, taken.guest_memory_bytes, &mut writer)?;
    let mut kernel_state = vec![0u8; taken.state_bytes as usize];
    state
        .read_exact_at(&mut kernel_state, 0)
        .context("reading the kernel state the sandbox wrote")?;
    writer
        .write_kernel_state(&kernel_state)
        .context("writing kernel.state")?;
    writer.finish().context("finishing the image")
}

fn memfd(name: &str) -> anyhow::Result<File> {
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| anyhow!("memfd_create: {e}"))?;
    Ok(File::from(fd))
}

/// Copy the data regions of `memory` (the memfd the sandbox wrote; holes are zero
/// pages) into the image, in order.
fn copy_memory(
    memory: &File,
    guest_bytes: u64,
    writer: &mut checkpoints::ImageWriter,
) -> anyhow::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let regions =
        checkpoints::data_regions(memory, guest_bytes).context("finding guest memory's data")?;
    let mut buf = vec![0u8; CHUNK as usize];
    for (mut at, end) in regions {
        while at < end {
            let n = (end - at).min(CHUNK) as usize;
            memory
                .read_exact_at(&mut buf[..n], at)
                .context("reading guest memory")?;
            writer
                .write_memory_at(at, &buf[..n])
                .context("writing memory.img")?;
            at += n as u64;
        }
    }
    Ok(())
}
