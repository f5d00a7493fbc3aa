//! Several containers in one sandbox (a pod), as containerd's CRI plugin creates them with
//! the stock runc shim: `runsc create` of the pod's sandbox container (CRI annotations
//! container-type `sandbox`) boots the sandbox; `runsc create` of each app container
//! (container-type `container`, sandbox-id naming the sandbox container) joins it and
//! leaves a waiter whose pid stands for the container. Every later command reaches the
//! container through the pod's sandbox. The host's root, read-only, is the rootfs.
//!
//! Needs root; fails, not skips, without it.

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nanovisor_tests::runsc;

/// How long a condition the test waits for may take.
const PATIENCE: Duration = Duration::from_secs(30);

const SANDBOX_TYPE: (&str, &str) = ("io.kubernetes.cri.container-type", "sandbox");
const CONTAINER_TYPE: (&str, &str) = ("io.kubernetes.cri.container-type", "container");
const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        uid, "0",
        "the pod tests need root (they boot sandboxes on /dev/kvm): run them as root"
    );
}

/// A scratch directory (state root, bundles, captured output), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        // Short: the control socket's path under it must fit in sun_path.
        let dir = PathBuf::from(format!("/tmp/nv-pod-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a scratch directory");
        Scratch(dir)
    }

    fn root(&self) -> PathBuf {
        self.0.join("root")
    }

    /// A bundle whose rootfs is the host's `/`, read-only, running `args` with the given
    /// annotations.
    fn bundle(&self, name: &str, args: &[&str], annotations: &[(&str, &str)]) -> PathBuf {
        let b = self.0.join(name);
        std::fs::create_dir_all(&b).expect("creating a bundle");
        let annotations: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root"],
                "cwd": "/",
            },
            "root": {"path": "/", "readonly": true},
            "hostname": "pod",
            "annotations": annotations,
        });
        std::fs::write(b.join("config.json"), config.to_string()).expect("writing config.json");
        b
    }

    /// Adds `mount` (OCI JSON) to the bundle's config.json.
    fn add_mount(&self, bundle: &Path, mount: serde_json::Value) {
        let path = bundle.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("config.json"))
                .expect("JSON");
        config["mounts"] = serde_json::json!([mount]);
        std::fs::write(&path, config.to_string()).expect("writing config.json");
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(runsc());
        cmd.arg("--root").arg(self.root()).args(args);
        cmd
    }

    /// `runsc --root ROOT ARGS…`, its output captured.
    fn runsc(&self, args: &[&str]) -> Output {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .expect("running runsc");
        eprintln!(
            "runsc {}: {}\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.runsc(args);
        assert!(out.status.success(), "runsc {} failed", args.join(" "));
        out
    }

    /// `runsc create` with its stdout and stderr in files of the scratch directory (the
    /// container's init inherits them, so nothing may wait for them to close). Returns
    /// what `create` itself wrote to stderr.
    fn create(&self, bundle: &Path, id: &str, pid_file: Option<&Path>) -> (bool, String) {
        let err_path = self.0.join(format!("{id}.create.err"));
        let out = File::create(self.0.join(format!("{id}.out"))).expect("output file");
        let err = File::create(&err_path).expect("output file");
        let mut cmd = self.command(&["create", "--bundle", bundle.to_str().expect("utf-8")]);
        if let Some(p) = pid_file {
            cmd.arg("--pid-file").arg(p);
        }
        let status = cmd
            .arg(id)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .expect("running runsc create");
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        eprintln!("runsc create {id}: {status}\nstderr: {stderr}");
        (status.success(), stderr)
    }

    /// `runsc create` whose stdout (the container's) is a pipe we read.
    fn create_piped(&self, bundle: &Path, id: &str, pid_file: &Path) -> ChildStdout {
        let mut child: Child = self
            .command(&["create", "--bundle", bundle.to_str().expect("utf-8")])
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("running runsc create");
        let stdout = child.stdout.take().expect("piped stdout");
        // Not `output()`: the pipe stays open in the sandbox until the container ends.
        let status = child.wait().expect("waiting for runsc create");
        assert!(status.success(), "runsc create {id} failed: {status}");
        stdout
    }

    fn state(&self, id: &str) -> serde_json::Value {
        json(&self.ok(&["state", id]))
    }

    /// Entries under the state root (none if it does not exist).
    fn state_entries(&self) -> Vec<String> {
        match std::fs::read_dir(self.root()) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Host processes whose command line names our state root (sandbox processes,
    /// waiters), with their command lines.
    fn our_processes(&self) -> Vec<(i32, String)> {
        let root = self.root();
        let root = root.to_str().expect("utf-8");
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.iter().any(|a| a == root) && alive(pid) {
                found.push((pid, args.join(" ")));
            }
        }
        found
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Leave nothing running, whatever the test did.
        for (pid, _) in self.our_processes() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Whether host process `pid` exists and has not exited (a zombie has).
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .unwrap_or("X");
    state != "Z" && state != "X"
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid")
}

/// Waits until `cond` holds, failing with `what` after [`PATIENCE`].
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Everything written to `out` until it closes, within [`PATIENCE`].
fn read_all(mut out: ChildStdout) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    rx.recv_timeout(PATIENCE)
        .expect("the container's stdout did not close")
}

fn pids(out: &Output) -> Vec<i64> {
    json(out)
        .as_array()
        .expect("a JSON array of pids")
        .iter()
        .map(|p| p.as_i64().expect("a pid"))
        .collect()
}

#[test]
fn app_containers_join_the_pod_sandbox() {
    require_root();
    let s = Scratch::new("join");
    let sb = "sb";
    let sb_bundle = s.bundle(
        "sandbox",
        &["/bin/sleep", "1000"],
        &[SANDBOX_TYPE, (SANDBOX_ID, sb)],
    );
    let (ok, err) = s.create(&sb_bundle, sb, Some(&s.0.join("sb.pid")));
    assert!(ok, "create of the sandbox container failed: {err}");
    s.ok(&["start", sb]);
    let boot_pid = read_pid(&s.0.join("sb.pid"));
    assert!(alive(boot_pid), "the sandbox process runs");
    let state = s.state(sb);
    assert_eq!(state["status"], "running");
    assert_eq!(state["pid"], boot_pid);

    // An app container that prints and exits.
    let app = "app";
    let app_bundle = s.bundle(
        "app",
        &["/bin/sh", "-c", "echo hello-from-app; sleep 0.2"],
        &[CONTAINER_TYPE, (SANDBOX_ID, sb)],
    );
    let app_pid_file = s.0.join("app.pid");
    let stdout = s.create_piped(&app_bundle, app, &app_pid_file);
    let waiter = read_pid(&app_pid_file);
    assert_ne!(waiter, boot_pid, "no second sandbox process: a waiter");
    assert!(alive(waiter), "the waiter runs");
    let state = s.state(app);
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"], waiter);
    assert_eq!(
        s.our_processes()
            .iter()
            .filter(|(_, cmd)| cmd.contains(" boot "))
            .count(),
        1,
        "one sandbox process for the pod: {:?}",
        s.our_processes()
    );
    s.ok(&["start", app]);
    let text = read_all(stdout);
    assert_eq!(text, "hello-from-app\n");
    eventually("the app container has stopped", || {
        s.state(app)["status"] == "stopped"
    });
    assert_eq!(s.state(app)["pid"], 0);
    let wait = json(&s.ok(&["wait", app]));
    assert_eq!(wait["exitStatus"], 0, "{wait}");
    eventually("the waiter has exited", || !alive(waiter));
    // The pod runs on.
    assert_eq!(s.state(sb)["status"], "running");

    // A long-running app container: ps, exec, kill --all.
    let app2 = "app2";
    let app2_bundle = s.bundle(
        "app2",
        &["/bin/sh", "-c", "sleep 1000 & sleep 1000"],
        &[CONTAINER_TYPE, (SANDBOX_ID, sb)],
    );
    // Its own mounts: a host directory at /srv.
    let volume = s.0.join("volume");
    std::fs::create_dir_all(&volume).expect("mkdir");
    std::fs::write(volume.join("marker"), "app2-volume\n").expect("writing a file");
    s.add_mount(
        &app2_bundle,
        serde_json::json!({"destination": "/srv", "type": "bind", "source": volume,
                           "options": ["rbind", "ro"]}),
    );
    let (ok, err) = s.create(&app2_bundle, app2, Some(&s.0.join("app2.pid")));
    assert!(ok, "create of app2 failed: {err}");
    let waiter2 = read_pid(&s.0.join("app2.pid"));
    s.ok(&["start", app2]);
    assert_eq!(s.state(app2)["status"], "running");
    eventually("app2 runs its three processes", || {
        pids(&s.ok(&["ps", "--format", "json", app2])).len() == 3
    });
    let sb_pids = pids(&s.ok(&["ps", "--format", "json", sb]));
    assert_eq!(
        sb_pids,
        [1],
        "ps of the sandbox lists only its own container's processes"
    );
    let app2_pids = pids(&s.ok(&["ps", "--format", "json", app2]));
    assert!(!app2_pids.contains(&1), "{app2_pids:?}");
    let exec = s.ok(&["exec", app2, "/bin/echo", "exec-in-app2"]);
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "exec-in-app2\n");
    let cat = s.ok(&["exec", app2, "/bin/cat", "/srv/marker"]);
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "app2-volume\n");
    let stats = json(&s.ok(&["events", "--stats", app2]));
    assert_eq!(stats["id"], app2);

    // A running app container is not deleted without --force.
    let out = s.runsc(&["delete", app2]);
    assert!(!out.status.success(), "deleting a running container failed");

    s.ok(&["kill", "--all", app2, "KILL"]);
    eventually("app2 has stopped", || s.state(app2)["status"] == "stopped");
    let wait = json(&s.ok(&["wait", app2]));
    assert_eq!(wait["exitStatus"], 128 + 9, "{wait}");
    eventually("app2's waiter has exited", || !alive(waiter2));
    assert_eq!(s.state(sb)["status"], "running", "the pod runs on");

    // A created app container deletes without --force: its init never runs.
    let app3 = "app3";
    let (ok, err) = s.create(&app2_bundle, app3, Some(&s.0.join("app3.pid")));
    assert!(ok, "create of app3 failed: {err}");
    let waiter3 = read_pid(&s.0.join("app3.pid"));
    assert_eq!(s.state(app3)["status"], "created");
    s.ok(&["delete", app3]);
    eventually("app3's waiter has exited", || !alive(waiter3));
    assert_eq!(
        pids(&s.ok(&["ps", "--format", "json", sb])),
        [1],
        "nothing else runs in the sandbox's own container"
    );

    // delete --force of every container leaves nothing behind.
    for id in [app, app2, sb] {
        s.ok(&["delete", "--force", id]);
    }
    eventually("no sandbox process or waiter of ours is left", || {
        s.our_processes().is_empty()
    });
    assert!(!alive(boot_pid));
    assert!(
        s.state_entries().is_empty(),
        "state left behind: {:?}",
        s.state_entries()
    );
}

#[test]
fn a_pod_needs_its_sandbox() {
    require_root();
    let s = Scratch::new("nosb");
    let b = s.bundle(
        "app",
        &["/bin/true"],
        &[CONTAINER_TYPE, (SANDBOX_ID, "no-such-pod")],
    );
    let (ok, err) = s.create(&b, "app", None);
    assert!(!ok, "create without the pod's sandbox succeeded");
    assert!(
        err.contains("\"no-such-pod\"") && err.contains("does not exist"),
        "stderr: {err}"
    );
    assert!(s.state_entries().is_empty(), "{:?}", s.state_entries());

    // Without a sandbox-id, a `container`-type bundle boots a sandbox of its own
    // (podman, plain runc users).
    let own = s.bundle("own", &["/bin/true"], &[CONTAINER_TYPE]);
    let (ok, err) = s.create(&own, "own", Some(&s.0.join("own.pid")));
    assert!(ok, "create failed: {err}");
    let pid = read_pid(&s.0.join("own.pid"));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("boot"),
        "its pid is a sandbox process"
    );
    s.ok(&["delete", "--force", "own"]);
    eventually("nothing of ours runs", || s.our_processes().is_empty());
}

/// The Kubernetes pause container's program (kubernetes/build/pause/linux/pause.c, in
/// short): SIGINT and SIGTERM end it with status 0; it warns unless it is pid 1.
const PAUSE_C: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void sigdown(int signo) {
  psignal(signo, "Shutting down, got signal");
  exit(0);
}

static void sigreap(int signo) {
  (void)signo;
  while (waitpid(-1, NULL, WNOHANG) > 0)
    ;
}

int main(void) {
  if (getpid() != 1)
    fprintf(stderr, "Warning: pause should be the first process\n");
  if (sigaction(SIGINT, &(struct sigaction){.sa_handler = sigdown}, NULL) < 0)
    return 1;
  if (sigaction(SIGTERM, &(struct sigaction){.sa_handler = sigdown}, NULL) < 0)
    return 2;
  if (sigaction(SIGCHLD,
                &(struct sigaction){.sa_handler = sigreap, .sa_flags = SA_NOCLDSTOP},
                NULL) < 0)
    return 3;
  for (;;)
    pause();
  fprintf(stderr, "Error: infinite loop terminated\n");
  return 42;
}
"#;

#[test]
fn the_pause_container_holds_the_pod_until_terminated() {
    require_root();
    let s = Scratch::new("pause");
    let src = s.0.join("pause.c");
    std::fs::write(&src, PAUSE_C).expect("writing pause.c");
    let pause = s.0.join("pause");
    let gcc = Command::new("gcc")
        .args(["-static", "-O1", "-Wall", "-o"])
        .arg(&pause)
        .arg(&src)
        .output()
        .expect("running gcc (is it installed?)");
    assert!(
        gcc.status.success(),
        "gcc failed: {}",
        String::from_utf8_lossy(&gcc.stderr)
    );

    let sb = "pod";
    let sb_bundle = s.bundle(
        "pause-bundle",
        &[pause.to_str().expect("utf-8")],
        &[SANDBOX_TYPE, (SANDBOX_ID, sb)],
    );
    let (ok, err) = s.create(&sb_bundle, sb, Some(&s.0.join("pod.pid")));
    assert!(ok, "create of the pause container failed: {err}");
    s.ok(&["start", sb]);
    let boot_pid = read_pid(&s.0.join("pod.pid"));

    let app = "app";
    let app_bundle = s.bundle(
        "app",
        &["/bin/sleep", "1000"],
        &[CONTAINER_TYPE, (SANDBOX_ID, sb)],
    );
    let (ok, err) = s.create(&app_bundle, app, Some(&s.0.join("app.pid")));
    assert!(ok, "create of the app container failed: {err}");
    let waiter = read_pid(&s.0.join("app.pid"));
    s.ok(&["start", app]);
    assert_eq!(s.state(app)["status"], "running");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s.state(sb)["status"], "running", "pause waits in pause(2)");

    // SIGTERM ends pause, and with it the pod.
    s.ok(&["kill", sb, "TERM"]);
    eventually("the sandbox process has exited", || !alive(boot_pid));
    let said = std::fs::read_to_string(s.0.join("pod.out")).unwrap_or_default()
        + &std::fs::read_to_string(s.0.join("pod.create.err")).unwrap_or_default();
    assert!(
        said.contains("Shutting down, got signal"),
        "pause's output: {said}"
    );
    assert!(!said.contains("Warning"), "pause is pid 1: {said}");
    assert_eq!(s.state(sb)["status"], "stopped");
    assert_eq!(
        s.state(app)["status"],
        "stopped",
        "the app ends with its pod"
    );
    eventually("the app's waiter has exited", || !alive(waiter));

    // Stopped containers of a dead pod delete without --force.
    s.ok(&["delete", app]);
    s.ok(&["delete", sb]);
    assert!(s.state_entries().is_empty(), "{:?}", s.state_entries());
    eventually("nothing of ours runs", || s.our_processes().is_empty());
}
