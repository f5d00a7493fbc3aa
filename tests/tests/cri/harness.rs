//! What the CRI test runs around the runtime: a scratch directory `/tmp/nvcri-PID`, a local
//! registry (Debian's `docker-registry`) on a free port of 127.0.0.1, and a private containerd
//! whose root, state, socket, CNI config (a bridge on a private /24) and registry hosts all live
//! in the scratch directory. Dropping the [`Harness`] removes every pod still there through the
//! CRI, stops containerd and the registry, kills what they left (shims, `runsc boot`: any process
//! naming the scratch directory), unmounts what is mounted under it, deletes the bridge and the
//! pod network namespaces containerd made, and removes the directory, whatever happened before.
//!
//! [`Harness::start_nanovisor_cri`] starts nanovisor-cri in front of that containerd: its
//! socket and configuration in the scratch directory, containerd's CRI socket as its upstream,
//! and (optionally) a `[nanovisor]` table, [`pods_config`], for the handler it serves itself.
//! Dropping the [`NanovisorCri`] removes its pods, stops it, and kills and unmounts what its
//! handler left under `DIR/p`.
//!
//! Set `NANOVISOR_CRI_KEEP=1` to keep the scratch directory. containerd's log is copied to
//! `target/cri-e2e/containerd.log` (and nanovisor-cri's to `target/cri-e2e/nanovisor-cri.log`)
//! in any case.

use std::collections::BTreeSet;
use std::ffi::{c_char, c_int, CString};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{ListPodSandboxRequest, RemovePodSandboxRequest, StopPodSandboxRequest};
use nanovisor_tests::registry::Registry;
use nanovisor_tests::{cri_binary, target_dir};
use tonic::transport::{Channel, Endpoint, Uri};

use super::image::{sh, Layout, TAG};

extern "C" {
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn umount2(target: *const c_char, flags: c_int) -> c_int;
}
const SIGKILL: c_int = 9;
const SIGTERM: c_int = 15;
const MNT_DETACH: c_int = 2;

/// The PATH containerd, its shims and runsc get.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The runtime handler (a RuntimeClass's `handler`) that selects our shim,
/// `containerd-shim-nanovisor-v1`, which drives our runsc.
pub const HANDLER: &str = "nanovisor";

/// A second handler: containerd's stock runc shim running our runsc as its runc.
pub const RUNC_SHIM_HANDLER: &str = "nanovisor-runc";

/// containerd's stock handler: its runc shim running the host's runc (Debian's containerd
/// depends on runc). nanovisor-cri forwards it upstream.
pub const STOCK_RUNC_HANDLER: &str = "runc";

/// The registry repositories the test pushes its two images to ([`Harness::reference`]).
pub const NODE_REPO: &str = "nanovisor/node";
pub const PAUSE_REPO: &str = "nanovisor/pause";

/// The name of the checkpoint image of the test's server under `DIR/checkpoints` (what
/// `dev.nanovisor.checkpoint-image` names; nanovisor-cri's pool restores it too).
pub const CHECKPOINT_NAME: &str = "web";

pub struct Harness {
    /// `/tmp/nvcri-PID`. Short: runsc's control sockets live under `DIR/rs/<64-hex id>/`.
    pub dir: PathBuf,
    /// containerd's CRI (gRPC) socket.
    pub socket: PathBuf,
    /// The registry's `127.0.0.1:PORT`.
    pub registry_addr: String,
    /// The CNI bridge on the host.
    pub bridge: String,
    /// The pods' /24 (`10.211.X.0/24`).
    pub subnet: String,
    registry: Option<Registry>,
    containerd: Option<Child>,
    /// Pod network namespaces (`/run/netns/cni-*`) there were before containerd started.
    netns_before: BTreeSet<String>,
    /// The runsc containerd's handlers run (set by [`Harness::start_containerd`]).
    pub runsc: PathBuf,
    /// containerd's `sandbox_image` (set by [`Harness::start_containerd`]).
    pub sandbox_image: String,
    /// Whether nanovisor-cri logs at debug level (the tests); the benchmark turns it off.
    pub cri_debug: bool,
    /// Whether the pool's sandboxes get a warm-up request once restored (the benchmark's
    /// `--pool-warm-up`; `warm_up` in pods/src/config.rs).
    pub pool_warm_up: bool,
}

impl Harness {
    pub fn new() -> Harness {
        let pid = std::process::id();
        let dir = PathBuf::from(format!("/tmp/nvcri-{pid}"));
        if dir.exists() {
            // A previous run with our pid that could not clean up: try now.
            unmount_under(&dir);
            let _ = std::fs::remove_dir_all(&dir);
        }
        std::fs::create_dir_all(&dir).expect("creating the scratch directory");
        Harness {
            socket: dir.join("containerd.sock"),
            dir,
            registry_addr: String::new(),
            bridge: format!("nvcri{}", pid % 1_000_000),
            subnet: free_subnet(),
            registry: None,
            containerd: None,
            netns_before: cni_netns(),
            runsc: PathBuf::new(),
            sandbox_image: String::new(),
            cri_debug: true,
            pool_warm_up: false,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
        p
    }

    /// Starts `docker-registry serve` on a free port of 127.0.0.1 with its storage in the
    /// scratch directory, and waits until `/v2/` answers.
    pub fn start_registry(&mut self) {
        let registry = Registry::start(&self.mkdir("registry"));
        self.registry_addr = registry.addr.clone();
        self.registry = Some(registry);
    }

    /// Pushes a layout to the registry as `REPO:test`; the reference containerd pulls.
    pub fn push(&self, layout: &Layout, repo: &str) -> String {
        let policy = self.write(
            "skopeo-policy.json",
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        );
        let tmp = self.mkdir("skopeo-tmp");
        let reference = self.reference(repo);
        sh(Command::new("skopeo")
            .env("TMPDIR", &tmp)
            .arg("--policy")
            .arg(&policy)
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{TAG}", layout.dir.display()))
            .arg(format!("docker://{reference}")));
        reference
    }

    /// The reference [`Harness::push`] gives `repo`.
    pub fn reference(&self, repo: &str) -> String {
        format!("{}/{repo}:{TAG}", self.registry_addr)
    }

    /// Writes containerd's config (CRI plugin with two runtime handlers: `nanovisor`, our
    /// shim, found on containerd's PATH and configured by a shim.toml its runtime options
    /// name; and `nanovisor-runc`, the stock runc shim running `runsc` as its runc), the CNI
    /// bridge config and the registry's hosts.toml, and starts containerd.
    /// [`Harness::connect`] waits until it answers.
    pub fn start_containerd(&mut self, runsc: &Path, shim: &Path, sandbox_image: &str) {
        self.runsc = runsc.to_path_buf();
        self.sandbox_image = sandbox_image.to_string();
        let d = self.dir.display().to_string();
        let runsc_root = self.mkdir("rs");
        let bin = self.mkdir("bin");
        std::os::unix::fs::symlink(shim, bin.join("containerd-shim-nanovisor-v1"))
            .expect("linking the shim into containerd's PATH");
        let shim_config = self.write(
            "shim.toml",
            &format!(
                "runsc = \"{}\"\nroot = \"{d}/nv\"\ncheckpoint_dir = \"{d}/checkpoints\"\n",
                runsc.display()
            ),
        );
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d}/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{sandbox_image}"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    disable_apparmor = true
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "{d}/certs.d"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "{d}/cni/net.d"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{HANDLER}]
        runtime_type = "io.containerd.nanovisor.v1"
        pod_annotations = ["dev.nanovisor.*"]
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{HANDLER}.options]
          ConfigPath = "{shim_config}"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{RUNC_SHIM_HANDLER}]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{RUNC_SHIM_HANDLER}.options]
          BinaryName = "{runsc}"
          Root = "{root}"
"#,
            runsc = runsc.display(),
            root = runsc_root.display(),
            shim_config = shim_config.display(),
        );
        let config = self.write("config.toml", &config);
        // A bridge with the gateway address on the host end, no default route in the pod and
        // no masquerading: nothing outside the /24 changes.
        self.write(
            "cni/net.d/10-nvcri.conflist",
            &serde_json::json!({
                "cniVersion": "0.4.0",
                "name": "nvcri",
                "plugins": [{
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": format!("{d}/cni/ipam"),
                        "ranges": [[{ "subnet": self.subnet }]],
                        "routes": [],
                    },
                }],
            })
            .to_string(),
        );
        let r = &self.registry_addr;
        self.write(
            &format!("certs.d/{r}/hosts.toml"),
            &format!(
                "server = \"http://{r}\"\n[host.\"http://{r}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        );
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(&config)
            .env_clear()
            .env("PATH", format!("{}:{PATH}", bin.display()));
        for key in ["RUST_LOG", "RUST_BACKTRACE", "HOME"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        self.containerd = Some(spawn_logged(&mut cmd, &self.path("containerd.log")));
    }

    /// A channel to containerd's CRI once it answers (within 30 s).
    pub async fn connect(&mut self) -> Channel {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.socket.exists() {
                if let Ok(ch) = connect(&self.socket).await {
                    let mut rt = RuntimeServiceClient::new(ch.clone());
                    let version = rt
                        .version(k8s_cri::v1::VersionRequest {
                            version: "v1".into(),
                        })
                        .await;
                    if version.is_ok() {
                        return ch;
                    }
                }
            }
            if let Some(Ok(Some(status))) = self.containerd.as_mut().map(Child::try_wait) {
                panic!(
                    "containerd exited ({status}):\n{}",
                    tail(&self.containerd_log(), 40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "containerd's CRI did not answer on {} within 30 s:\n{}",
                self.socket.display(),
                tail(&self.containerd_log(), 40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn containerd_log(&self) -> String {
        read(&self.path("containerd.log"))
    }

    /// containerd's log lines at level warning or error (the runtime's errors show up there).
    pub fn containerd_errors(&self) -> String {
        let log = self.containerd_log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("level=error") || l.contains("level=warn"))
            .collect();
        tail(&lines.join("\n"), 40)
    }

    fn own_pids(&self) -> Vec<u32> {
        let mut pids = vec![std::process::id()];
        pids.extend(self.registry.as_ref().map(Registry::pid));
        pids.extend(self.containerd.as_ref().map(Child::id));
        pids
    }

    /// Processes whose command line names the scratch directory (containerd's shims, runsc and
    /// the sandboxes it started), containerd and the registry themselves excepted.
    pub fn our_processes(&self) -> Vec<String> {
        let own = self.own_pids();
        let needle = self.dir.as_os_str().as_bytes();
        processes()
            .into_iter()
            .filter(|(pid, cmdline)| {
                !own.contains(pid) && cmdline.windows(needle.len()).any(|w| w == needle)
            })
            .map(|(pid, cmdline)| format!("{pid}: {}", printable(&cmdline)))
            .collect()
    }

    /// Processes (`pid: cmdline`) whose command line names any of `needles` (pod and
    /// container ids), the test's own excepted.
    pub fn processes_naming(&self, needles: &[&str]) -> Vec<String> {
        let me = std::process::id();
        processes()
            .into_iter()
            .filter(|(pid, cmdline)| {
                *pid != me
                    && needles.iter().any(|n| {
                        let n = n.as_bytes();
                        !n.is_empty() && cmdline.windows(n.len()).any(|w| w == n)
                    })
            })
            .map(|(pid, cmdline)| format!("{pid}: {}", printable(&cmdline)))
            .collect()
    }

    /// Mount points anywhere whose path names any of `needles` (pod and container ids).
    pub fn mounts_naming(&self, needles: &[&str]) -> Vec<String> {
        read(Path::new("/proc/self/mountinfo"))
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| needles.iter().any(|n| !n.is_empty() && m.contains(n)))
            .map(str::to_string)
            .collect()
    }

    /// Mount points under the scratch directory.
    pub fn leftover_mounts(&self) -> Vec<String> {
        mounts_under(&self.dir)
    }

    /// Pod network namespaces (`/run/netns/cni-*`) made since containerd started.
    pub fn leftover_netns(&self) -> Vec<String> {
        cni_netns()
            .difference(&self.netns_before)
            .cloned()
            .collect()
    }

    /// Waits (up to `within`) until no process, mount or pod network namespace of ours is left;
    /// panics listing what is.
    pub fn assert_nothing_left(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (procs, mounts, netns) = (
                self.our_processes(),
                self.leftover_mounts(),
                self.leftover_netns(),
            );
            if procs.is_empty() && mounts.is_empty() && netns.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "left behind after the pod was removed:\nprocesses:\n  {}\nmounts:\n  {}\n\
                     network namespaces:\n  {}",
                    procs.join("\n  "),
                    mounts.join("\n  "),
                    netns.join("\n  ")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What to look at when the test failed: containerd's warnings and errors, what `ctr` says
    /// about tasks, and runsc's logs (`log.json` in each bundle, which the shim passes as
    /// `--log`; `boot.log` under runsc's root).
    pub fn dump_diagnostics(&self) {
        eprintln!(
            "---- containerd warnings and errors ----\n{}",
            self.containerd_errors()
        );
        if self.socket.exists() {
            let tasks = Command::new("ctr")
                .arg("-a")
                .arg(&self.socket)
                .args(["-n", "k8s.io", "tasks", "ls"])
                .output();
            if let Ok(out) = tasks {
                eprintln!(
                    "---- ctr -n k8s.io tasks ls ----\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let mut logs = Vec::new();
        find_files(&self.path("state"), "log.json", &mut logs);
        find_files(&self.path("rs"), "boot.log", &mut logs);
        find_files(&self.path("nv"), "boot.log", &mut logs);
        for log in logs {
            eprintln!(
                "---- {} (last 30 lines) ----\n{}",
                log.display(),
                tail(&read(&log), 30)
            );
        }
    }

    /// Stops and removes every pod containerd still has, through the CRI. Not from inside a
    /// tokio runtime: it runs its own.
    pub fn remove_all_pods(&self) {
        remove_all_pods_at(&self.socket);
    }
}

/// Stops and removes every pod the CRI endpoint at `socket` lists (within 30 s). Not from
/// inside a tokio runtime: it runs its own.
fn remove_all_pods_at(socket: &Path) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let socket = socket.to_path_buf();
    let cleanup = async move {
        let mut rt = RuntimeServiceClient::new(connect(&socket).await.ok()?);
        let pods = rt
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .ok()?
            .into_inner()
            .items;
        for pod in pods {
            eprintln!("cleanup: removing pod {}", pod.id);
            let id = pod.id.clone();
            if let Err(e) = rt
                .stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await
            {
                eprintln!("cleanup: StopPodSandbox {id}: {}", e.message());
            }
            if let Err(e) = rt
                .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                .await
            {
                eprintln!("cleanup: RemovePodSandbox {}: {}", pod.id, e.message());
            }
        }
        Some(())
    };
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), cleanup).await });
}

impl Drop for Harness {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            self.dump_diagnostics();
        }
        if self.containerd.is_some() {
            self.remove_all_pods();
        }
        let saved = target_dir().join("cri-e2e");
        if std::fs::create_dir_all(&saved).is_ok() {
            let _ = std::fs::copy(self.path("containerd.log"), saved.join("containerd.log"));
        }
        if let Some(child) = self.containerd.take() {
            stop(child, "containerd");
        }
        for p in self.our_processes() {
            eprintln!("cleanup: killing {p}");
            if let Some(pid) = p.split(':').next().and_then(|s| s.parse::<c_int>().ok()) {
                // SAFETY: kill has no memory-safety preconditions; the pid is a process that
                // names our scratch directory (started by our containerd).
                unsafe { kill(pid, SIGKILL) };
            }
        }
        // Dropping the registry stops it.
        self.registry = None;
        unmount_under(&self.dir);
        for ns in self.leftover_netns() {
            eprintln!("cleanup: deleting network namespace {ns}");
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .output();
        if std::env::var_os("NANOVISOR_CRI_KEEP").is_some() {
            eprintln!("keeping {}", self.dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cleanup: removing {}: {e}", self.dir.display());
        }
    }
}

/// The `[nanovisor]` table of nanovisor-cri's configuration: the handler nanovisor-cri serves
/// itself (`nanovisor-pods`' `Config`), set up like containerd's `nanovisor` handler: our runsc,
/// containerd's images and snapshots, the same CNI network and pause image, the checkpoint
/// images under `DIR/checkpoints`, and a pool of one sandbox restored from the test's
/// checkpoint image over the Node image. Its state lives under `DIR/p` (short: runsc's control
/// sockets are below it).
pub fn pods_config(h: &Harness) -> String {
    let d = h.dir.display();
    format!(
        r#"[nanovisor]
runsc = "{runsc}"
root = "{d}/p"
containerd_socket = "{containerd}"
containerd_namespace = "k8s.io"
snapshotter = "overlayfs"
sandbox_image = "{pause}"
cni_bin_dirs = ["/usr/lib/cni"]
cni_conf_dir = "{d}/cni/net.d"
checkpoint_dir = "{d}/checkpoints"

[[nanovisor.pool]]
checkpoint = "{CHECKPOINT_NAME}"
image = "{node}"
size = 1
{warm_up}"#,
        runsc = h.runsc.display(),
        containerd = h.socket.display(),
        pause = h.sandbox_image,
        node = h.reference(NODE_REPO),
        // GET / of the checkpointed server changes nothing.
        warm_up = if h.pool_warm_up {
            "warm_up = { port = 8080 }\n"
        } else {
            ""
        },
    )
}

/// nanovisor-cri in front of the harness's containerd (see [`Harness::start_nanovisor_cri`]).
pub struct NanovisorCri {
    /// Its CRI socket.
    pub socket: PathBuf,
    /// Its log (stderr, `--debug`).
    pub log: PathBuf,
    /// The `[nanovisor]` handler's state directory (`DIR/p`), if configured.
    pub pods_root: Option<PathBuf>,
    child: Option<Child>,
}

impl Harness {
    /// Writes nanovisor-cri's configuration (`DIR/nanovisor-cri.toml`: listen on
    /// `DIR/nanovisor-cri.sock`, containerd's CRI socket upstream, and [`pods_config`] when
    /// `with_pods`) and starts it. [`NanovisorCri::connect`] waits until it answers.
    pub fn start_nanovisor_cri(&self, with_pods: bool) -> NanovisorCri {
        let socket = self.path("nanovisor-cri.sock");
        let mut config = format!(
            "listen = \"{}\"\nupstream = \"{}\"\n\n",
            socket.display(),
            self.socket.display()
        );
        if with_pods {
            config.push_str(&pods_config(self));
        }
        let config = self.write("nanovisor-cri.toml", &config);
        let log = self.path("nanovisor-cri.log");
        let mut cmd = Command::new(cri_binary());
        cmd.arg("--config").arg(&config);
        if self.cri_debug {
            cmd.arg("--debug");
        }
        cmd.env_clear().env("PATH", PATH);
        for key in ["RUST_BACKTRACE", "HOME"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        let child = spawn_logged(&mut cmd, &log);
        NanovisorCri {
            socket,
            log,
            pods_root: with_pods.then(|| self.path("p")),
            child: Some(child),
        }
    }
}

impl NanovisorCri {
    /// A channel to nanovisor-cri once Version answers through it (within 30 s).
    pub async fn connect(&mut self) -> Channel {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::from("its socket is not there");
        loop {
            if self.socket.exists() {
                match connect(&self.socket).await {
                    Ok(ch) => {
                        let version = RuntimeServiceClient::new(ch.clone())
                            .version(k8s_cri::v1::VersionRequest {
                                version: "v1".into(),
                            })
                            .await;
                        match version {
                            Ok(_) => return ch,
                            Err(e) => last = format!("Version: {:?}: {}", e.code(), e.message()),
                        }
                    }
                    Err(e) => last = format!("connecting: {e}"),
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "nanovisor-cri exited ({status}):\n{}",
                    tail(&read(&self.log), 40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "nanovisor-cri did not answer on {} within 30 s ({last}):\n{}",
                self.socket.display(),
                tail(&read(&self.log), 40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&read(&self.log), n)
    }
}

impl Drop for NanovisorCri {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- nanovisor-cri's log (last 60 lines) ----\n{}",
                self.log_tail(60)
            );
        }
        if self.child.is_some() {
            remove_all_pods_at(&self.socket);
        }
        if let Some(child) = self.child.take() {
            stop(child, "nanovisor-cri");
        }
        let saved = target_dir().join("cri-e2e");
        if std::fs::create_dir_all(&saved).is_ok() {
            let _ = std::fs::copy(&self.log, saved.join("nanovisor-cri.log"));
        }
        // What its handler left (a sandbox it did not release): processes naming its state
        // directory, then mounts under it.
        if let Some(root) = &self.pods_root {
            let needle = root.as_os_str().as_bytes();
            let me = std::process::id();
            for (pid, cmdline) in processes() {
                if pid != me && cmdline.windows(needle.len()).any(|w| w == needle) {
                    eprintln!("cleanup: killing {pid}: {}", printable(&cmdline));
                    // SAFETY: kill has no memory-safety preconditions; the pid names the
                    // handler's state directory (a sandbox nanovisor-cri started).
                    unsafe { kill(pid as c_int, SIGKILL) };
                }
            }
            unmount_under(root);
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// A channel to the gRPC server on unix socket `path` (the URI is a placeholder).
pub async fn connect(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
}

/// Spawns `cmd` with stdin from /dev/null and stdout and stderr appended to `log`.
fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
    let err = file.try_clone().expect("dup of a log file");
    cmd.stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"))
}

/// SIGTERM, up to 10 s to exit, then SIGKILL.
fn stop(mut child: Child, what: &str) {
    // SAFETY: kill has no memory-safety preconditions; the pid is our child, not yet reaped.
    unsafe { kill(child.id() as c_int, SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("cleanup: {what} ignored SIGTERM for 10 s; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

/// A `10.211.X.0/24` no address or route of the host is in.
fn free_subnet() -> String {
    let used = format!(
        "{}{}",
        sh(Command::new("ip").args(["-j", "-4", "addr"])),
        sh(Command::new("ip").args(["-j", "-4", "route", "show", "table", "all"]))
    );
    let pid = std::process::id();
    let x = (0..250u32)
        .map(|i| (pid + i) % 250 + 1)
        .find(|x| !used.contains(&format!("\"10.211.{x}.")))
        .expect("a free /24 in 10.211.0.0/16");
    format!("10.211.{x}.0/24")
}

/// `(pid, cmdline)` of every process.
fn processes() -> Vec<(u32, Vec<u8>)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            Some((pid, cmdline))
        })
        .collect()
}

fn printable(cmdline: &[u8]) -> String {
    String::from_utf8_lossy(cmdline)
        .replace('\0', " ")
        .trim()
        .to_string()
}

/// Mount points at or under `dir`, from /proc/self/mountinfo, in mount order.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    read(Path::new("/proc/self/mountinfo"))
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .collect()
}

/// Detaches every mount under `dir`, newest first.
fn unmount_under(dir: &Path) {
    for m in mounts_under(dir).into_iter().rev() {
        eprintln!("cleanup: unmounting {m}");
        let Ok(c) = CString::new(m) else { continue };
        // SAFETY: c is a valid NUL-terminated path that outlives the call.
        unsafe { umount2(c.as_ptr(), MNT_DETACH) };
    }
}

/// The names in /run/netns that containerd's CRI makes (`cni-UUID`).
fn cni_netns() -> BTreeSet<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("cni-"))
        .collect()
}

fn find_files(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() && e.file_name() != "rootfs" {
            find_files(&p, name, out);
        } else if e.file_name() == name {
            out.push(p);
        }
    }
}

pub fn read(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
