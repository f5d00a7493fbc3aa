//! `runsc` as an OCI runtime, the parts that need no sandbox: `spec`, `features`, the
//! errors of `create` (which must leave no state behind), commands on unknown ids, and
//! cleaning up after a sandbox process that died. Each test has its own `--root`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nanovisor_tests::runsc;

/// A scratch directory (state root and bundles), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        // Short: the control socket's path under it must fit in sun_path.
        let dir = PathBuf::from(format!("/tmp/nv-oci-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a scratch directory");
        Scratch(dir)
    }

    fn root(&self) -> PathBuf {
        self.0.join("root")
    }

    /// A bundle with a rootfs directory and the given config.json (none if `None`).
    fn bundle(&self, name: &str, config: Option<&str>) -> PathBuf {
        let b = self.0.join(name);
        std::fs::create_dir_all(b.join("rootfs")).expect("creating a bundle");
        if let Some(config) = config {
            std::fs::write(b.join("config.json"), config).expect("writing config.json");
        }
        b
    }

    /// `runsc --root ROOT ARGS…`.
    fn runsc(&self, args: &[&str]) -> Output {
        let out = Command::new(runsc())
            .arg("--root")
            .arg(self.root())
            .args(args)
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
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a runc-style failure: exit 1 and `runsc: …` containing `what` on stderr.
fn assert_fails(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status; stderr: {}",
        stderr(out)
    );
    let err = stderr(out);
    assert!(err.starts_with("runsc: "), "stderr: {err}");
    assert!(err.contains(what), "stderr should mention {what:?}: {err}");
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

const GOOD_CONFIG: &str = r#"{
  "ociVersion": "1.0.2",
  "process": {"user": {"uid": 0, "gid": 0}, "args": ["/bin/true"], "cwd": "/"},
  "root": {"path": "rootfs"}
}"#;

#[test]
fn spec_writes_a_runc_like_config() {
    let s = Scratch::new("spec");
    let b = s.0.join("b");
    std::fs::create_dir_all(&b).expect("mkdir");
    let out = s.runsc(&["spec", "--bundle", b.to_str().expect("utf-8")]);
    assert!(out.status.success());
    let text = std::fs::read_to_string(b.join("config.json")).expect("config.json written");
    let spec: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(spec["process"]["args"], serde_json::json!(["sh"]));
    assert_eq!(spec["process"]["terminal"], true);
    assert_eq!(spec["root"]["path"], "rootfs");
    assert!(spec["ociVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("1.")));
    assert!(spec["mounts"].as_array().is_some_and(|m| !m.is_empty()));
    // runc refuses to overwrite.
    let again = s.runsc(&["spec", "--bundle", b.to_str().expect("utf-8")]);
    assert_fails(&again, "exists");
}

#[test]
fn features_is_oci_json() {
    let s = Scratch::new("features");
    let out = s.runsc(&["features"]);
    assert!(out.status.success());
    let f = json(&out);
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert!(f["ociVersionMax"]
        .as_str()
        .is_some_and(|v| v.starts_with("1.")));
    assert_eq!(f["hooks"], serde_json::json!([]));
    assert!(f["linux"]["namespaces"].is_array());
    assert_eq!(f["linux"]["seccomp"]["enabled"], false);
    assert!(f["annotations"]["dev.nanovisor.version"].is_string());
}

#[test]
fn create_errors_leave_no_state() {
    let s = Scratch::new("create");
    let missing = s.0.join("no-such-bundle");
    let out = s.runsc(&["create", "--bundle", missing.to_str().expect("utf-8"), "c1"]);
    assert_fails(&out, &format!("bundle {}", missing.display()));

    let no_config = s.bundle("noconfig", None);
    let out = s.runsc(&["create", "-b", no_config.to_str().expect("utf-8"), "c1"]);
    assert_fails(&out, "config.json");

    let bad_json = s.bundle("badjson", Some("{\"ociVersion\": \"1.0.2\", "));
    let out = s.runsc(&[
        "create",
        "--bundle",
        bad_json.to_str().expect("utf-8"),
        "c1",
    ]);
    assert_fails(
        &out,
        &format!("bundle {}: config.json: ", bad_json.display()),
    );

    let no_process = s.bundle(
        "noprocess",
        Some(r#"{"ociVersion": "1.0.2", "root": {"path": "rootfs"}}"#),
    );
    let out = s.runsc(&[
        "create",
        "--bundle",
        no_process.to_str().expect("utf-8"),
        "c1",
    ]);
    assert_fails(
        &out,
        &format!(
            "bundle {}: config.json: missing field `process`",
            no_process.display()
        ),
    );

    let empty_args = s.bundle(
        "noargs",
        Some(
            r#"{"ociVersion": "1.0.2", "root": {"path": "rootfs"},
                "process": {"user": {"uid": 0, "gid": 0}, "args": [], "cwd": "/"}}"#,
        ),
    );
    let out = s.runsc(&[
        "create",
        "--bundle",
        empty_args.to_str().expect("utf-8"),
        "c1",
    ]);
    assert_fails(&out, "process.args must not be empty");

    let no_rootfs = s.bundle(
        "norootfs",
        Some(&GOOD_CONFIG.replace("\"rootfs\"", "\"missing-rootfs\"")),
    );
    let out = s.runsc(&[
        "create",
        "--bundle",
        no_rootfs.to_str().expect("utf-8"),
        "c1",
    ]);
    assert_fails(&out, "root.path");

    // A terminal needs a console socket when runsc detaches (runc's rule).
    let tty = s.bundle(
        "tty",
        Some(&GOOD_CONFIG.replace("\"process\": {", "\"process\": {\"terminal\": true, ")),
    );
    let out = s.runsc(&["create", "--bundle", tty.to_str().expect("utf-8"), "c1"]);
    assert_fails(&out, "console socket");

    let good = s.bundle("good", Some(GOOD_CONFIG));
    for bad_id in ["a/b", "..", "has space", "colon:id"] {
        let out = s.runsc(&["create", "--bundle", good.to_str().expect("utf-8"), bad_id]);
        assert_fails(&out, "invalid container id format");
    }
    let out = s.runsc(&["create", "--bundle", good.to_str().expect("utf-8"), ""]);
    assert_eq!(out.status.code(), Some(1));

    assert!(
        s.state_entries().is_empty(),
        "failed creates left state behind: {:?}",
        s.state_entries()
    );
}

#[test]
fn unknown_containers_fail_cleanly() {
    let s = Scratch::new("unknown");
    for args in [
        &["state", "nope"][..],
        &["start", "nope"],
        &["kill", "nope"],
        &["kill", "nope", "KILL"],
        &["delete", "nope"],
        &["pause", "nope"],
        &["resume", "nope"],
        &["ps", "nope"],
        &["exec", "nope", "true"],
        &["events", "--stats", "nope"],
        &["wait", "nope"],
        &["acl", "list", "nope"],
    ] {
        let out = s.runsc(args);
        // containerd's shim treats "does not exist" as "already gone".
        assert_fails(&out, "container \"nope\" does not exist");
    }
    // `delete --force` of a container that is not there succeeds, as runc's does.
    assert!(s.runsc(&["delete", "--force", "nope"]).status.success());
    let out = s.runsc(&["kill", "nope", "SIGNOPE"]);
    assert_fails(&out, "unknown signal");
    let out = s.runsc(&["list", "--format", "json"]);
    assert!(out.status.success());
    assert_eq!(json(&out), serde_json::json!([]));
    assert!(s.state_entries().is_empty());
}

#[test]
fn errors_reach_the_log_file_as_runc_writes_them() {
    let s = Scratch::new("log");
    let log = s.0.join("log.json");
    let out = Command::new(runsc())
        .args(["--root", s.root().to_str().expect("utf-8")])
        .args([
            "--log",
            log.to_str().expect("utf-8"),
            "--log-format",
            "json",
        ])
        .args(["state", "nope"])
        .output()
        .expect("running runsc");
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).expect("log written");
    let last: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("a line")).expect("JSON line");
    assert_eq!(last["level"], "error");
    assert!(
        last["msg"]
            .as_str()
            .is_some_and(|m| m.contains("does not exist")),
        "{last}"
    );
    assert!(last["time"].is_string());
}

/// The pid of a process that has exited (and been reaped).
fn dead_pid() -> i32 {
    let mut child = Command::new("true").spawn().expect("running true");
    let pid = child.id() as i32;
    child.wait().expect("reaping true");
    pid
}

/// Writes the state of a container whose sandbox process was `pid` (as `create` would).
fn fake_container(s: &Scratch, id: &str, pid: i32) -> PathBuf {
    let bundle = s.bundle(&format!("bundle-{id}"), Some(GOOD_CONFIG));
    let dir = s.root().join(id);
    std::fs::create_dir_all(&dir).expect("creating a state directory");
    let state = serde_json::json!({
        "version": 1,
        "id": id,
        "bundle": bundle,
        "rootfs": bundle.join("rootfs"),
        "oci_version": "1.0.2",
        "pid": pid,
        "pid_start_time": 1,
        "created": "2026-11-22T10:00:00.000Z",
        "annotations": {"a": "b"},
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["/bin/true"], "cwd": "/"},
        "terminal": false,
        "console_socket": null,
        "container_type": "sandbox",
        "sandbox_id": null,
        "cgroup_dirs": [],
        "owner": 0,
    });
    std::fs::write(dir.join("state.json"), state.to_string()).expect("writing state.json");
    dir
}

#[test]
fn a_dead_sandbox_is_stopped_and_deletable() {
    let s = Scratch::new("dead");
    let dir = fake_container(&s, "crashed", dead_pid());

    let out = s.runsc(&["state", "crashed"]);
    assert!(out.status.success());
    let state = json(&out);
    assert_eq!(state["id"], "crashed");
    assert_eq!(state["status"], "stopped");
    assert_eq!(state["pid"], 0);
    assert_eq!(state["annotations"]["a"], "b");
    assert!(state["bundle"]
        .as_str()
        .is_some_and(|b| Path::new(b).is_absolute()));

    let out = s.runsc(&["list", "--format", "json"]);
    let list = json(&out);
    assert_eq!(list[0]["id"], "crashed");
    assert_eq!(list[0]["status"], "stopped");
    let out = s.runsc(&["list", "-q"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "crashed\n");

    assert_fails(&s.runsc(&["kill", "crashed", "9"]), "container not running");
    // runc: `kill --all` of a stopped container has nothing left to signal and succeeds.
    assert!(s.runsc(&["kill", "--all", "crashed", "9"]).status.success());
    assert_fails(
        &s.runsc(&["start", "crashed"]),
        "cannot start a container that has stopped",
    );
    assert_fails(&s.runsc(&["exec", "crashed", "true"]), "stopped");

    let out = s.runsc(&["delete", "crashed"]);
    assert!(out.status.success());
    assert!(!dir.exists(), "delete removed the state directory");

    // The same with --force.
    let dir = fake_container(&s, "crashed2", dead_pid());
    assert!(s.runsc(&["delete", "--force", "crashed2"]).status.success());
    assert!(!dir.exists());
}

#[test]
fn a_reused_pid_is_not_the_sandbox() {
    // Our own pid is alive, but its start time is not the one recorded: another process.
    let s = Scratch::new("reuse");
    let dir = fake_container(&s, "reused", std::process::id() as i32);
    let state = json(&s.runsc(&["state", "reused"]));
    assert_eq!(state["status"], "stopped");
    assert!(s.runsc(&["delete", "reused"]).status.success());
    assert!(!dir.exists());
}

#[test]
fn a_crashed_create_is_deletable() {
    // A state directory without state.json whose lock nobody holds: `create` died.
    let s = Scratch::new("halfmade");
    let dir = s.root().join("half");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let state = json(&s.runsc(&["state", "half"]));
    assert_eq!(state["status"], "stopped");
    assert_fails(
        &s.runsc(&[
            "create",
            "--bundle",
            s.bundle("b", Some(GOOD_CONFIG)).to_str().expect("utf-8"),
            "half",
        ]),
        "already exists",
    );
    assert!(s.runsc(&["delete", "half"]).status.success());
    assert!(!dir.exists());
}

/// `create --acl FILE` with a malformed policy is refused before anything starts, with the
/// line that is wrong, and leaves no state.
#[test]
fn a_malformed_acl_policy_is_refused_at_create() {
    let s = Scratch::new("acl");
    let b = s.bundle(
        "b",
        Some(r#"{"ociVersion": "1.0.2", "process": {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}}, "root": {"path": "rootfs"}}"#),
    );
    let policy = s.0.join("policy.yaml");
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - id: x\n    egress: {to: [10.0.0.0/33]}\n    action: allow\n",
    )
    .expect("writing the policy");
    let out = s.runsc(&[
        "create",
        "--acl",
        policy.to_str().expect("utf-8"),
        "--bundle",
        b.to_str().expect("utf-8"),
        "c1",
    ]);
    assert_fails(&out, "line 4");
    assert!(stderr(&out).contains("10.0.0.0/33"), "{}", stderr(&out));
    assert!(
        s.state_entries().is_empty(),
        "state left: {:?}",
        s.state_entries()
    );
}
