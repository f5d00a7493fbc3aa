//! `runsc create [--bundle B] [--pid-file F] [--console-socket S] [--no-pivot]
//! [--no-new-keyring] [--preserve-fds N] [--checkpoint-image DIR] ID`: check the bundle,
//! start the sandbox process (`runsc boot`, or with `--checkpoint-image` a restore of that
//! image), wait until it reports ready, and record the container's state. The
//! container's init starts with `runsc start`.
//!
//! The sandbox process is our child, in a session of its own, with our stdio as the
//! container's (as runc's init has), or /dev/null when the container has a terminal,
//! whose master goes to the console socket. It reports on fd 3 (one line: `ready`, or
//! `error: MESSAGE`) and gets the pty's slave as fd 4.
//!
//! A further container of a pod (CRI annotations: container-type `container`, and a
//! sandbox-id naming the pod's sandbox container under the same root) starts no sandbox
//! process: as in gVisor, it joins the pod's sandbox (`CreateContainer` on that
//! sandbox's control socket, with our stdio or the pty's slave as its init's), and a
//! waiter (`runsc exec-wait --container ID POD 0`, our child in a session of its own)
//! stands for it: its pid goes to `--pid-file` and `state.json`, and it exits with the
//! container's init. The container's memory limit, network and ACL are the pod's.

use std::io::Read as _;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::Spec;
use sentry::sandbox::HostSource;

use crate::boot::mounts;
use crate::commands::restore::WorkingSet;
use crate::commands::GlobalOpts;
use crate::console;
use crate::container::control::Endpoint;
use crate::container::dir::{ContainerDir, DirError, DirLock, Root, MAX_SOCKET_PATH};
use crate::container::{
    cgroup_dirs, control, host_process, Container, ContainerError, ContainerType, Host, State,
    STATE_FILE, STATE_VERSION,
};
use crate::oci;

/// How long the sandbox process has to report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the sandbox process logs when the caller gave no `--log`.
pub const BOOT_LOG: &str = "boot.log";

/// The fds the sandbox process gets.
const READY_FD: RawFd = 3;
const CONSOLE_FD: RawFd = 4;

#[derive(Args)]
pub struct CreateArgs {
    /// The bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the sandbox process's pid here.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// A unix socket to send the terminal's master to, when process.terminal is set.
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility (the sandbox never pivots a host root).
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility (the guest has no host keyring).
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Accepted for runc compatibility; extra fds are not passed to the container yet.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// The sandbox's initial network policy (YAML/JSON, docs/acl.md); else the
    /// `dev.nanovisor.acl` / `dev.nanovisor.acl-file` annotations; else allow all.
    #[arg(long, value_name = "FILE")]
    pub acl: Option<PathBuf>,
    /// Restore the sandbox from this checkpoint image instead of starting the bundle's
    /// process; the restored guest waits for `start` (gVisor's `create` + `restore`, in
    /// one step). containerd's shim uses this for pods annotated with a checkpoint image.
    #[arg(long, value_name = "DIR")]
    pub checkpoint_image: Option<PathBuf>,
    /// With --checkpoint-image: what to do with the pages the image records its guest
    /// touching first (as `runsc restore --working-set`).
    #[arg(long, value_enum, default_value_t = WorkingSet::Prefault, requires = "checkpoint_image")]
    pub working_set: WorkingSet,
    /// The container id.
    pub id: String,
}

/// What `create` needs, whether `runsc create` or `runsc run` calls it.
pub struct CreateOpts<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    pub preserve_fds: u32,
    /// `--acl FILE`, passed on to the sandbox process.
    pub acl: Option<&'a Path>,
    /// `run` in the foreground: a terminal is relayed by us, not sent to a socket.
    pub foreground: bool,
    /// `restore`: the sandbox comes from this checkpoint image, not the bundle's
    /// process, and what to do with the image's working set.
    pub restore: Option<(&'a Path, WorkingSet)>,
}

/// A created container.
pub struct Created {
    pub container: Container,
    /// The sandbox process (our child).
    pub child: Child,
    /// The terminal's master, when `foreground` and the process has a terminal.
    pub master: Option<OwnedFd>,
}

pub fn run(args: CreateArgs, global: &GlobalOpts) -> anyhow::Result<i32> {
    create(
        global,
        &CreateOpts {
            id: &args.id,
            bundle: &args.bundle,
            pid_file: args.pid_file.as_deref(),
            console_socket: args.console_socket.as_deref(),
            preserve_fds: args.preserve_fds,
            acl: args.acl.as_deref(),
            foreground: false,
            restore: args
                .checkpoint_image
                .as_deref()
                .map(|image| (image, args.working_set)),
        },
    )?;
    Ok(0)
}

/// The bundle as an absolute path, checked to be a directory.
fn bundle_path(bundle: &Path) -> anyhow::Result<PathBuf> {
    let abs = if bundle.is_absolute() {
        bundle.to_path_buf()
    } else {
        std::env::current_dir()
            .context("current directory")?
            .join(bundle)
    };
    match std::fs::metadata(&abs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("bundle {}: not a directory", abs.display()),
        Err(e) => bail!("bundle {}: {e}", abs.display()),
    }
    Ok(std::fs::canonicalize(&abs).unwrap_or(abs))
}

/// Creates a container: everything `runsc create` does.
pub fn create(global: &GlobalOpts, opts: &CreateOpts<'_>) -> anyhow::Result<Created> {
    crate::container::dir::validate_id(opts.id)?;
    let root = global.root()?;
    let bundle = bundle_path(opts.bundle)?;
    let in_bundle = |e: String| anyhow!("bundle {}: {e}", bundle.display());
    let spec = oci::load_spec(&bundle).map_err(in_bundle)?;
    let rootfs = oci::validate(&spec, &bundle).map_err(in_bundle)?;
    let Some(process) = spec.process().clone() else {
        bail!(
            "bundle {}: config.json: missing field `process`",
            bundle.display()
        );
    };
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() && !opts.foreground {
        bail!("cannot allocate tty if runsc will detach without setting console socket");
    }
    if !terminal && opts.console_socket.is_some() {
        bail!("cannot use console socket if runsc will not detach or allocate tty");
    }
    if opts.preserve_fds > 0 {
        tracing::warn!(
            "--preserve-fds {}: extra fds are not passed to the container",
            opts.preserve_fds
        );
    }
    let annotations = State::annotations_of(&spec);
    let (container_type, sandbox_id) = ContainerType::of(&annotations);
    let host = match (container_type, &sandbox_id) {
        (ContainerType::Container, Some(pod)) => Some(pod_sandbox(&root, opts.id, pod)?),
        _ => None,
    };
    if opts.restore.is_some() && host.is_some() {
        bail!("a container that joins its pod's sandbox cannot be restored on its own: restore the pod's sandbox container");
    }
    let socket = root.path().join(opts.id).join(control::SOCKET);
    if host.is_none() && socket.as_os_str().len() > MAX_SOCKET_PATH {
        bail!(
            "the control socket {} would be longer than {MAX_SOCKET_PATH} bytes: use a shorter --root or id",
            socket.display()
        );
    }

    let (dir, lock) = root.create(opts.id)?;
    let setup = Setup {
        global,
        opts,
        dir: &dir,
        bundle: &bundle,
        terminal,
    };
    let started = match (&host, &sandbox_id) {
        (Some(host), Some(pod)) => setup.join(host, pod, &spec, &process, &rootfs),
        _ => setup.boot(),
    };
    match started {
        Ok((child, master)) => {
            let pid = child.id() as i32;
            let state = State {
                version: STATE_VERSION,
                id: opts.id.to_string(),
                bundle: bundle.clone(),
                rootfs,
                oci_version: spec.version().clone(),
                pid,
                pid_start_time: host_process::start_time(pid).unwrap_or(0),
                created: netstack::acl::audit::rfc3339_millis(SystemTime::now()),
                annotations,
                process,
                terminal,
                console_socket: opts.console_socket.map(Path::to_path_buf),
                container_type,
                sandbox_id,
                cgroup_dirs: spec
                    .linux()
                    .as_ref()
                    .and_then(|l| l.cgroups_path().as_ref())
                    .map(|p| cgroup_dirs(&p.to_string_lossy()))
                    .unwrap_or_default(),
                // SAFETY: getuid cannot fail and touches no memory.
                owner: unsafe { libc::getuid() },
                host,
            };
            let saved = finish(&dir, &state, opts.pid_file);
            let mut child = child;
            if let Err(e) = saved {
                abort(&dir, &state, &mut child, lock);
                return Err(e);
            }
            drop(lock);
            Ok(Created {
                container: Container {
                    dir,
                    state: Some(state),
                },
                child,
                master,
            })
        }
        Err(e) => {
            let _ = dir.remove();
            drop(lock);
            Err(e)
        }
    }
}

/// Saves the state and the pid file.
fn finish(dir: &ContainerDir, state: &State, pid_file: Option<&Path>) -> anyhow::Result<()> {
    if let Some(path) = pid_file {
        super::write_pid_file(path, state.pid)?;
    }
    dir.write_atomic(STATE_FILE, &state.to_json())?;
    Ok(())
}

/// Undoes a create whose sandbox process (or waiter) runs: kill it (and a pod
/// container's pending init), remove the state directory.
fn abort(dir: &ContainerDir, state: &State, child: &mut Child, lock: DirLock) {
    if let Some(host) = &state.host {
        discard(&Endpoint {
            socket: host.socket.clone(),
            container_id: state.id.clone(),
        });
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = dir.remove();
    drop(lock);
}

/// Drops a pod container that was created in the sandbox but not started (SIGKILL to
/// its pending init), best effort.
fn discard(to: &Endpoint) {
    if let Err(e) = to
        .connect()
        .and_then(|mut c| c.signal(0, true, libc::SIGKILL))
    {
        tracing::debug!(container = to.container_id, "discarding the container: {e}");
    }
}

/// The sandbox of the pod whose sandbox container is `pod`, for a further container
/// `id` of that pod: it must exist under the same root, be a sandbox of its own, and run.
fn pod_sandbox(root: &Root, id: &str, pod: &str) -> anyhow::Result<Host> {
    if pod == id {
        bail!("container {id:?} has container-type \"container\" but its sandbox-id annotation names itself");
    }
    let sandbox = match Container::load(root, pod) {
        Ok(c) => c,
        Err(ContainerError::Dir(DirError::NotFound(_))) => bail!(
            "the pod's sandbox container {pod:?} (its sandbox-id annotation) does not exist under {}",
            root.path().display()
        ),
        Err(e) => return Err(anyhow!("the pod's sandbox container: {e}")),
    };
    let Some(state) = &sandbox.state else {
        bail!("the pod's sandbox container {pod:?} is still being created");
    };
    if state.host.is_some() {
        bail!("sandbox-id {pod:?} names a container that runs in another container's sandbox");
    }
    if !sandbox.sandbox_alive() {
        bail!("the pod's sandbox container {pod:?} has stopped");
    }
    Ok(Host {
        socket: sandbox.dir.file(control::SOCKET),
        pid: state.pid,
        pid_start_time: state.pid_start_time,
    })
}

struct Setup<'a> {
    global: &'a GlobalOpts,
    opts: &'a CreateOpts<'a>,
    dir: &'a ContainerDir,
    bundle: &'a Path,
    terminal: bool,
}

/// `fd` duplicated to a number of 10 or more, close-on-exec, so that moving fds into
/// place at 3 and 4 in the child never overwrites one not yet moved.
fn high_fd(fd: BorrowedFd<'_>) -> anyhow::Result<OwnedFd> {
    let raw = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))
        .map_err(|e| anyhow!("duplicating a descriptor: {e}"))?;
    // SAFETY: F_DUPFD_CLOEXEC just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

impl Setup<'_> {
    /// Creates the container in its pod's sandbox (`host`, whose sandbox container is
    /// `pod`) and starts its waiter. On failure nothing is left in the sandbox.
    fn join(
        &self,
        host: &Host,
        pod: &str,
        spec: &Spec,
        process: &oci_spec::runtime::Process,
        rootfs: &Path,
    ) -> anyhow::Result<(Child, Option<OwnedFd>)> {
        // The sandbox cannot see the host's tree: open the root and bind sources here.
        let root = HostSource::open_root(rootfs)
            .with_context(|| format!("root file system {}", rootfs.display()))?;
        let mounts = mounts::plan(spec, self.bundle)
            .iter()
            .filter_map(|m| m.to_message().transpose())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let hostname = spec.hostname().as_deref().unwrap_or_default();
        let to = Endpoint {
            socket: host.socket.clone(),
            container_id: self.opts.id.to_string(),
        };
        let mut spec = oci::process_spec(process);
        spec.terminal = self.terminal;
        let pty = if self.terminal {
            let size = if self.opts.foreground {
                console::window_size(std::io::stdin().as_fd())
            } else {
                None
            };
            Some(console::open_pty(size).context("creating the container's terminal")?)
        } else {
            None
        };
        let mut control = to.connect()?;
        match &pty {
            Some(pty) => {
                control.create_container(spec, hostname, &root, &mounts, &[pty.slave.as_fd()])?
            }
            None => {
                let (stdin, stdout, stderr) =
                    (std::io::stdin(), std::io::stdout(), std::io::stderr());
                control.create_container(
                    spec,
                    hostname,
                    &root,
                    &mounts,
                    &[stdin.as_fd(), stdout.as_fd(), stderr.as_fd()],
                )?
            }
        }
        drop(control);
        let master = match (pty, self.opts.console_socket) {
            (Some(pty), Some(socket)) => {
                drop(pty.slave);
                if let Err(e) = console::send_master(socket, pty.master.as_fd()) {
                    discard(&to);
                    return Err(e.into());
                }
                None
            }
            (Some(pty), None) => Some(pty.master),
            (None, _) => None,
        };
        match self.spawn_waiter(pod) {
            Ok(child) => Ok((child, master)),
            Err(e) => {
                discard(&to);
                Err(e)
            }
        }
    }

    /// `runsc exec-wait --container ID POD 0`, in a session of its own, stdio on
    /// /dev/null (the container's stdio is in the sandbox already).
    fn spawn_waiter(&self, pod: &str) -> anyhow::Result<Child> {
        let exe = std::env::current_exe().context("finding the runsc binary")?;
        let mut cmd = Command::new(exe);
        cmd.args(self.global.child_args(None))
            .arg("exec-wait")
            .arg("--container")
            .arg(self.opts.id)
            .arg(pod)
            .arg("0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // setsid, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().context("starting the container's waiter")
    }

    /// Starts the sandbox process and waits for its report. On failure the process is
    /// gone (killed and reaped) and the error says why.
    fn boot(&self) -> anyhow::Result<(Child, Option<OwnedFd>)> {
        let pty = if self.terminal {
            let size = if self.opts.foreground {
                console::window_size(std::io::stdin().as_fd())
            } else {
                None
            };
            Some(console::open_pty(size).context("creating the container's terminal")?)
        } else {
            None
        };
        let (ready_r, ready_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).context("creating the ready pipe")?;
        let ready_w = high_fd(ready_w.as_fd())?;
        let slave = pty.as_ref().map(|p| high_fd(p.slave.as_fd())).transpose()?;

        let own_log = self.global.log.is_none().then(|| self.dir.file(BOOT_LOG));
        let exe = std::env::current_exe().context("finding the runsc binary")?;
        let mut cmd = Command::new(exe);
        cmd.args(self.global.child_args(own_log.as_deref()))
            .arg("boot")
            .arg("--bundle")
            .arg(self.bundle)
            .arg("--ready-fd")
            .arg(READY_FD.to_string());
        if slave.is_some() {
            cmd.arg("--console-fd").arg(CONSOLE_FD.to_string());
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        }
        if let Some(acl) = self.opts.acl {
            cmd.arg("--acl").arg(acl);
        }
        if let Some((image, working_set)) = self.opts.restore {
            cmd.arg("--restore").arg(image);
            cmd.arg("--working-set").arg(working_set.as_arg());
        }
        cmd.arg(self.opts.id);
        let moves: Vec<(RawFd, RawFd)> = std::iter::once((ready_w.as_raw_fd(), READY_FD))
            .chain(slave.as_ref().map(|s| (s.as_raw_fd(), CONSOLE_FD)))
            .collect();
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // async-signal-safe functions (setsid, dup2) on descriptors that stay open in
        // the parent until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for &(from, to) in &moves {
                    // The sources are >= 10 and the targets 3 and 4: no overlap, and dup2
                    // leaves the copy without close-on-exec.
                    if libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = crate::confine::namespaces::spawn_in_new_pid_namespace(&mut cmd)
            .context("starting the sandbox process")?;
        drop(ready_w);
        drop(slave);

        let report = read_report(ready_r, READY_TIMEOUT);
        let reported = matches!(report, Report::Error(_));
        let failed = |child: &mut Child, why: String| -> anyhow::Error {
            let _ = child.kill();
            let status = child.wait().ok();
            let mut msg = why;
            if let Some(status) = status.filter(|_| msg.ends_with("before it was ready")) {
                msg.push_str(&format!(" ({status})"));
            }
            // A reported error says it all; otherwise the log may say why.
            if let Some(tail) = own_log.as_deref().filter(|_| !reported).and_then(log_tail) {
                msg.push_str(&format!("; {}:\n{tail}", BOOT_LOG));
            }
            anyhow!(msg)
        };
        match report {
            Report::Ready => {}
            Report::Error(e) => return Err(failed(&mut child, e)),
            Report::Eof => {
                return Err(failed(
                    &mut child,
                    "the sandbox process exited before it was ready".to_string(),
                ))
            }
            Report::Timeout => {
                return Err(failed(
                    &mut child,
                    format!(
                        "the sandbox process did not get ready within {} s",
                        READY_TIMEOUT.as_secs()
                    ),
                ))
            }
            Report::Garbled(line) => {
                return Err(failed(
                    &mut child,
                    format!("the sandbox process reported {line:?}"),
                ))
            }
        }
        let master = match (pty, self.opts.console_socket) {
            (Some(pty), Some(socket)) => {
                if let Err(e) = console::send_master(socket, pty.master.as_fd()) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e.into());
                }
                None
            }
            (Some(pty), None) => Some(pty.master),
            (None, _) => None,
        };
        Ok((child, master))
    }
}

/// What the sandbox process said on the ready pipe.
#[derive(Debug, PartialEq, Eq)]
enum Report {
    Ready,
    Error(String),
    /// The pipe closed without a line: the process died.
    Eof,
    Timeout,
    Garbled(String),
}

fn parse_report(line: &str) -> Report {
    let line = line.trim_end_matches('\n');
    if line == "ready" {
        Report::Ready
    } else if let Some(msg) = line.strip_prefix("error: ") {
        Report::Error(msg.to_string())
    } else {
        Report::Garbled(line.to_string())
    }
}

/// Reads one line from the ready pipe, waiting at most `timeout`.
fn read_report(pipe: OwnedFd, timeout: Duration) -> Report {
    let deadline = Instant::now() + timeout;
    let mut file = std::fs::File::from(pipe);
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Report::Timeout;
        }
        let ms = u16::try_from(left.as_millis().min(10_000)).unwrap_or(10_000);
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return Report::Eof,
        }
        let mut buf = [0u8; 512];
        match file.read(&mut buf) {
            Ok(0) => {
                return if line.is_empty() {
                    Report::Eof
                } else {
                    parse_report(&String::from_utf8_lossy(&line))
                }
            }
            Ok(n) => {
                line.extend_from_slice(&buf[..n]);
                if let Some(end) = line.iter().position(|&b| b == b'\n') {
                    return parse_report(&String::from_utf8_lossy(&line[..end]));
                }
                if line.len() > 64 << 10 {
                    return Report::Garbled(String::from_utf8_lossy(&line[..200]).into_owned());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Report::Eof,
        }
    }
}

/// The last lines of a log file, if it has any.
fn log_tail(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return None;
    }
    Some(lines[lines.len().saturating_sub(20)..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn reports() {
        assert_eq!(parse_report("ready"), Report::Ready);
        assert_eq!(
            parse_report("error: no rootfs"),
            Report::Error("no rootfs".into())
        );
        assert_eq!(parse_report("huh"), Report::Garbled("huh".into()));
    }

    #[test]
    fn reads_a_report_line() {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let mut w = std::fs::File::from(w);
        w.write_all(b"rea").expect("write");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w.write_all(b"dy\nmore").expect("write");
        });
        assert_eq!(read_report(r, Duration::from_secs(5)), Report::Ready);
        writer.join().expect("thread");

        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        drop(w);
        assert_eq!(read_report(r, Duration::from_secs(5)), Report::Eof);

        let (r, _w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        assert_eq!(read_report(r, Duration::from_millis(50)), Report::Timeout);
    }
}
