//! `runsc acl` on a running sandbox: a rule added over the control socket applies to the
//! next connection at once, shows in `acl list` and in the audit log, and removing it
//! opens the way again. The sandbox runs as an OCI container (`runsc create` + `start`)
//! in a network namespace made the way a CNI plugin makes a pod's.
//!
//! Needs root and iproute2; fails, not skips, without them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nanovisor_tests::cni::CniNetns;
use nanovisor_tests::{node_script, runsc, CLEAN_ENV, NODE};

fn host_http_server(body: &'static str) -> u16 {
    let l = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut conn in l.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn runsc_at(root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(runsc())
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("running runsc");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A bundle running `node net_client.js` on the host's root, in `netns`.
fn bundle(dir: &Path, netns: &str) -> PathBuf {
    let b = dir.join("bundle");
    std::fs::create_dir_all(&b).expect("mkdir");
    let env: Vec<String> = CLEAN_ENV.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": [NODE, node_script("net_client.js")],
            "env": env,
            "cwd": "/"
        },
        "root": {"path": "/", "readonly": true},
        "hostname": "acl-live",
        "linux": {"namespaces": [
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
            {"type": "network", "path": netns}
        ]}
    });
    std::fs::write(b.join("config.json"), config.to_string()).expect("config.json");
    b
}

#[test]
fn acl_rules_change_on_a_running_sandbox() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc_geteuid() };
    assert_eq!(euid, 0, "acl_live creates network namespaces: run as root");
    let ns = CniNetns::create("nvacl", 205);
    let port = host_http_server("hello-from-host");
    let dir = std::env::temp_dir().join(format!("nv-acl-live-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let root = dir.join("root");
    let b = bundle(&dir, &ns.path());
    let id = format!("acl-live-{}", std::process::id());

    // create: the container's stdio are create's, which the sandbox keeps.
    let mut create = Command::new(runsc())
        .arg("--root")
        .arg(&root)
        .args(["create", "--bundle"])
        .arg(&b)
        .arg(&id)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // The sandbox keeps create's stderr as the container's: a file, not a pipe
        // that would never reach end of file.
        .stderr(std::fs::File::create(dir.join("stderr")).expect("stderr file"))
        .spawn()
        .expect("runsc create");
    let mut stdin = create.stdin.take().expect("stdin");
    let stdout = create.stdout.take().expect("stdout");
    let status = create.wait().expect("create exits");
    let err = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    assert!(status.success(), "runsc create failed: {err}");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(l);
        }
    });
    let (code, _, err) = runsc_at(&root, &["start", &id]);
    assert_eq!(code, 0, "runsc start: {err}");

    let url = format!("http://{}:{port}/", ns.host());
    let mut ask = |cmd: &str| -> String {
        writeln!(stdin, "{cmd}").expect("to the guest");
        lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no answer to {cmd:?}"))
    };
    assert_eq!(
        ask(&format!("get {url}")),
        format!("get {url} 200 hello-from-host")
    );

    let rule = format!(
        "{{id: block-host, egress: {{to: [\"{}/32\"]}}, action: deny}}",
        ns.host()
    );
    let (code, out, err) = runsc_at(&root, &["acl", "add", &id, "--rule", &rule]);
    assert_eq!(code, 0, "acl add: {out}{err}");
    assert_eq!(
        ask(&format!("get {url}")),
        format!("get {url} error ECONNREFUSED"),
        "the new rule applies to the next connection"
    );
    let (code, listed, err) = runsc_at(&root, &["acl", "list", &id]);
    assert_eq!(code, 0, "acl list: {err}");
    assert!(listed.contains("block-host"), "acl list:\n{listed}");
    let (code, audit, err) = runsc_at(&root, &["acl", "audit", &id]);
    assert_eq!(code, 0, "acl audit: {err}");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"rule\":\"block-host\"") && l.contains("\"verdict\":\"deny\"")),
        "no deny line for block-host in:\n{audit}"
    );
    let (code, _, err) = runsc_at(&root, &["acl", "rm", &id, "block-host"]);
    assert_eq!(code, 0, "acl rm: {err}");
    assert_eq!(
        ask(&format!("get {url}")),
        format!("get {url} 200 hello-from-host")
    );
    let (code, _, err) = runsc_at(&root, &["acl", "rm", &id, "block-host"]);
    assert_ne!(code, 0, "removing an unknown rule must fail");
    assert!(
        err.contains("block-host"),
        "the error names the rule: {err}"
    );

    drop(stdin);
    let (code, _, err) = runsc_at(&root, &["delete", "--force", &id]);
    assert_eq!(code, 0, "delete: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
