//! `runsc do --netns PATH`: a sandbox adopts a network namespace made the way a CNI bridge
//! plugin makes a pod's (a veth `eth0` with an address and a default route, configured in the
//! namespace's kernel), serves the host from the address it took over, and the namespace's
//! kernel no longer holds that address.
//!
//! Needs root and iproute2; fails, not skips, without them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nanovisor_tests::cni::CniNetns;
use nanovisor_tests::{node_script, runsc, CLEAN_ENV, NODE};

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc_geteuid() };
    assert_eq!(
        euid, 0,
        "the --netns tests create network namespaces and veth pairs and need root"
    );
}

/// A running `runsc do --netns PATH … -- node net_server.js 8080`.
struct Sandbox {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr_log: Arc<Mutex<String>>,
    /// The line `runsc: sandbox ID: address A/P (gateway G on IF)`.
    address_line: String,
}

impl Sandbox {
    fn start(netns: &str, runsc_args: &[&str]) -> Sandbox {
        let mut cmd = Command::new(runsc());
        cmd.arg("do").arg("--netns").arg(netns).args(runsc_args);
        for (k, v) in CLEAN_ENV {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.arg("--")
            .arg(NODE)
            .arg(node_script("net_server.js"))
            .arg("8080")
            .env_clear()
            .envs(CLEAN_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning runsc");
        let stdin = child.stdin.take();
        let (out_tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if out_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (err_tx, err_rx) = mpsc::channel();
        let stderr_log = Arc::new(Mutex::new(String::new()));
        let log = stderr_log.clone();
        let err = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&format!("{line}\n"));
                let _ = err_tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let address_line = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match err_rx.recv_timeout(left) {
                Ok(l) if l.contains(": address ") => break l,
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "runsc printed no sandbox address; stderr:\n{}",
                        stderr_log.lock().unwrap_or_else(|e| e.into_inner())
                    );
                }
            }
        };
        Sandbox {
            child,
            stdin,
            stdout,
            stderr_log,
            address_line,
        }
    }

    fn line(&self, timeout: Duration) -> String {
        self.stdout.recv_timeout(timeout).unwrap_or_else(|_| {
            panic!(
                "no output from the guest within {timeout:?}; runsc stderr:\n{}",
                self.stderr()
            )
        })
    }

    fn stderr(&self) -> String {
        self.stderr_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Close the guest's stdin (the server exits) and return runsc's exit status.
    fn finish(mut self) -> Option<i32> {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `/` from `addr` over HTTP/1.0 with `extra` header bytes; the status line and body.
fn http_get(addr: SocketAddr, extra: usize) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let pad = "a".repeat(extra);
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\nX-Pad: {pad}\r\n\r\n").expect("request");
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .unwrap_or_else(|e| panic!("reading the answer from {addr}: {e}"));
    let status = resp.lines().next().unwrap_or("").to_string();
    let body = resp
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    format!("{status} | {body}")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn a_sandbox_adopts_a_cni_namespace_and_serves_from_its_address() {
    require_root();
    let ns = CniNetns::create("nvadopt", 203);
    let before = ns.kernel_addrs();
    assert!(
        before.contains(&ns.guest().to_string()),
        "the namespace was not set up: {before:?}"
    );
    let fwd = free_port();
    let sb = Sandbox::start(&ns.path(), &["-p", &format!("{fwd}:8080")]);
    assert!(
        sb.address_line.ends_with(&format!(
            ": address {}/24 (gateway {} on eth0)",
            ns.guest(),
            ns.host()
        )),
        "{}",
        sb.address_line
    );
    assert_eq!(sb.line(Duration::from_secs(60)), "ready");

    let guest = SocketAddr::new(IpAddr::V4(ns.guest()), 8080);
    assert_eq!(
        http_get(guest, 0),
        "HTTP/1.1 200 OK | count 1",
        "runsc stderr:\n{}",
        sb.stderr()
    );
    // The address is the sandbox's alone now.
    let left = ns.kernel_addrs();
    assert!(
        !left.contains(&ns.guest().to_string()),
        "the namespace's kernel still holds {}: {left:?}",
        ns.guest()
    );
    // `-p` reaches the adopted address.
    let forwarded = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), fwd);
    assert_eq!(http_get(forwarded, 0), "HTTP/1.1 200 OK | count 2");
    // A request spanning several segments arrives as MTU-sized frames: runsc turned the
    // peer's TSO/GSO off. (With them on, the host sends 12 KB super-frames, which are lost;
    // TCP limps on one MSS per retransmission timeout, so the answer is late but arrives.)
    assert!(
        sb.stderr().contains(&format!(
            "TX offloads turned off on its peer {}",
            ns.host_if
        )),
        "runsc stderr:\n{}",
        sb.stderr()
    );
    assert_eq!(
        http_get(guest, 12_000),
        "HTTP/1.1 200 OK | count 3",
        "runsc stderr:\n{}",
        sb.stderr()
    );

    // Nothing is left to adopt while the first sandbox holds the interface.
    let second = Command::new(runsc())
        .args(["do", "--netns", &ns.path(), "--", "/bin/true"])
        .env_clear()
        .envs(CLEAN_ENV)
        .output()
        .expect("running a second runsc");
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(125), "{err}");
    assert!(
        err.contains(&ns.path()) && err.contains("no address"),
        "the second adoption's error: {err}"
    );

    let stderr = sb.stderr();
    assert_eq!(sb.finish(), Some(0), "runsc stderr:\n{stderr}");
}

#[test]
fn netns_conflicts_with_network_none() {
    let out = Command::new(runsc())
        .args([
            "do",
            "--netns",
            "/var/run/netns/none-such",
            "--network",
            "none",
            "--",
            "/bin/true",
        ])
        .env_clear()
        .envs(CLEAN_ENV)
        .output()
        .expect("running runsc");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("--netns conflicts with --network none"),
        "{err}"
    );
}
