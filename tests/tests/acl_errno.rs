//! The errno a program gets when the sandbox's ACL denies a flow must be the one Linux gives
//! when netfilter rejects it. The oracle: `tests/guest/acl_errno.c` runs natively in a network
//! namespace whose iptables OUTPUT chain rejects the denied TCP flows (`REJECT --reject-with
//! tcp-reset`) and drops the denied UDP datagrams (`DROP`), and under
//! `runsc do --network sandbox --acl POLICY` with a policy that denies the same flows; both
//! runs must print the same bytes and exit alike.
//!
//! Which netfilter target models a "deny" (measured on Linux 6.18, both in the OUTPUT chain):
//! The sandbox fails fast, as REJECT does, rather than making a denied connect hang for two
//! minutes as DROP would; for UDP both targets give EPERM on the send itself, and DROP avoids
//! the ICMP error REJECT leaves on a connected socket.
//!
//! - `DROP`: the
//!   dropped packet's `ip_local_out` fails with EPERM. UDP `sendto`/`send` return EPERM at
//!   once. TCP ignores the failed SYN transmission (`tcp_connect` only reports ECONNREFUSED)
//!   and retransmits it until `tcp_syn_retries` (or TCP_SYNCNT) runs out: a blocking connect
//!   returns ETIMEDOUT, a non-blocking one EINPROGRESS, then POLLOUT|POLLERR|POLLHUP and
//!   SO_ERROR ETIMEDOUT. The program sets TCP_SYNCNT 1 so that takes 3 s, not 127 s.
//! - `REJECT` (icmp-port-unreachable, the default): TCP connect fails with ECONNREFUSED (the
//!   ICMP error), UDP `sendto` still returns EPERM (REJECT drops the datagram after answering
//!   it) and a connected UDP socket's next call gets the ICMP's ECONNREFUSED.
//!   `REJECT --reject-with tcp-reset` makes TCP connect fail with ECONNREFUSED too.
//!
//! Needs root, iproute2 (`ip`) and `iptables`; fails, not skips, when one is missing.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nanovisor_tests::{assert_same_outcome, guest_bin, runsc, Outcome, CLEAN_ENV};

/// The denied port (tcp and udp); nothing listens on it, so a flow that is not denied fails
/// with ECONNREFUSED instead, which the comparison shows.
const PORT_DENIED: u16 = 9;
/// How long (b) may wait for the non-blocking connect to fail: above the sandbox's own
/// connect timeout (75 s), so a sandbox that times out like Linux is not cut short.
const POLL_MS: &str = "90000";
/// How long one run of the program may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);
/// Native namespaces use 10.202.X.0/24 (runsc's sandboxes use 10.201.N.0/24).
const NATIVE_SUBNET: [u8; 2] = [10, 202];

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc_geteuid() };
    assert_eq!(
        euid, 0,
        "acl_errno creates network namespaces and iptables rules: run the tests as root"
    );
}

/// The absolute path of `tool` on the clean PATH, or a panic saying what to install.
fn require_tool(tool: &str, package: &str) -> PathBuf {
    let path = CLEAN_ENV
        .iter()
        .find(|(k, _)| *k == "PATH")
        .map(|(_, v)| *v)
        .unwrap_or_default();
    path.split(':')
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{tool} is not installed: apt-get install -y {package} (.ci/run installs it)")
        })
}

/// Runs a setup command; panics with its output when it fails.
fn sh(prog: &Path, args: &[&str]) {
    let out = Command::new(prog)
        .args(args)
        .env_clear()
        .envs(CLEAN_ENV)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", prog.display()));
    assert!(
        out.status.success(),
        "{} {} failed ({}):\n{}{}",
        prog.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn capture(prog: &Path, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .env_clear()
        .envs(CLEAN_ENV)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", prog.display()));
    assert!(
        out.status.success(),
        "{} {} failed: {}",
        prog.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace with a veth pair to the root namespace (host end `nvah<pid>` with
/// 10.202.X.1/24, inner end `nvag<pid>` with 10.202.X.2/24) and iptables rules on the
/// namespace's OUTPUT chain. Dropping it deletes the namespace and the veth pair.
struct NativeNet {
    ip: PathBuf,
    ns: String,
    host_if: String,
    /// The host end's address: where the program connects.
    host_addr: Ipv4Addr,
}

impl NativeNet {
    fn create(ip: &Path, iptables: &Path) -> NativeNet {
        let pid = std::process::id();
        // Serialize subnet choice between concurrent runs of this test.
        std::fs::create_dir_all("/run/nanovisor").expect("mkdir /run/nanovisor");
        let lock = std::fs::File::create("/run/nanovisor/acl-errno-test.lock")
            .expect("creating the subnet lock file");
        lock.lock().expect("locking the subnet lock file");
        let used = capture(ip, &["-4", "-o", "addr", "show"])
            + &capture(ip, &["-4", "route", "show", "table", "all"]);
        let octet = (0..254u32)
            .map(|i| ((pid + i) % 254 + 1) as u8)
            .find(|x| !used.contains(&format!("{}.{}.{x}.", NATIVE_SUBNET[0], NATIVE_SUBNET[1])))
            .expect("no free 10.202.X.0/24 subnet on this host");
        let [a, b] = NATIVE_SUBNET;
        let net = NativeNet {
            ip: ip.to_path_buf(),
            ns: format!("nv-acl-errno-{pid}"),
            host_if: format!("nvah{pid:x}"),
            host_addr: Ipv4Addr::new(a, b, octet, 1),
        };
        let guest_if = format!("nvag{pid:x}");
        let guest_addr = Ipv4Addr::new(a, b, octet, 2);
        // From here on a panic drops `net`, which deletes whatever exists.
        sh(ip, &["netns", "add", &net.ns]);
        sh(
            ip,
            &[
                "link",
                "add",
                &net.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &guest_if,
                "netns",
                &net.ns,
            ],
        );
        sh(
            ip,
            &[
                "addr",
                "add",
                &format!("{}/24", net.host_addr),
                "dev",
                &net.host_if,
            ],
        );
        sh(ip, &["link", "set", &net.host_if, "up"]);
        drop(lock);
        sh(ip, &["-n", &net.ns, "link", "set", "lo", "up"]);
        sh(
            ip,
            &[
                "-n",
                &net.ns,
                "addr",
                "add",
                &format!("{guest_addr}/24"),
                "dev",
                &guest_if,
            ],
        );
        sh(ip, &["-n", &net.ns, "link", "set", &guest_if, "up"]);
        // The ACL, as netfilter: drop tcp and udp to the host end on PORT_DENIED.
        let iptables = iptables.to_str().expect("utf-8 path");
        let host = net.host_addr.to_string();
        let port = PORT_DENIED.to_string();
        for (proto, target) in [
            ("tcp", &["REJECT", "--reject-with", "tcp-reset"][..]),
            ("udp", &["DROP"][..]),
        ] {
            let mut args = vec![
                "netns", "exec", &net.ns, iptables, "-w", "-A", "OUTPUT", "-p", proto, "-d", &host,
                "--dport", &port, "-j",
            ];
            args.extend_from_slice(target);
            sh(ip, &args);
        }
        net
    }

    /// `ip netns exec NS PROG ARGS`.
    fn command(&self, prog: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "exec", &self.ns]).arg(prog).args(args);
        cmd
    }
}

impl Drop for NativeNet {
    fn drop(&mut self) {
        // Deleting the namespace deletes the inner end, and with it the host end; delete the
        // host end as well in case the namespace was never made.
        for args in [
            vec!["netns", "del", self.ns.as_str()],
            vec!["link", "del", self.host_if.as_str()],
        ] {
            let _ = Command::new(&self.ip)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let d = std::env::temp_dir().join(format!("nv-acl-errno-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The address the program reads on stdin: known beforehand, or the sandbox's host side,
/// which runsc prints on stderr once it has set up the network.
enum Peer {
    Known(Ipv4Addr),
    FromRunsc,
}

/// From `runsc: sandbox ID: address A/24 (host side H on IF)`, H.
fn host_side(line: &str) -> Option<Ipv4Addr> {
    let rest = line.split("(host side ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Runs `cmd` with a clean environment, writes the peer's address as one line on its stdin,
/// and waits for it (at most [`RUN_TIMEOUT`]). Returns what it left and the address it got.
fn run_with_peer(mut cmd: Command, peer: Peer) -> (Outcome, Ipv4Addr) {
    cmd.env_clear()
        .envs(CLEAN_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {shown}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut out = child.stdout.take().expect("piped stdout");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err = child.stderr.take().expect("piped stderr");
    let err_log = Arc::new(Mutex::new(Vec::<u8>::new()));
    let (line_tx, lines): (_, Receiver<String>) = mpsc::channel();
    let log = err_log.clone();
    let err_reader = std::thread::spawn(move || {
        let mut err = BufReader::new(err);
        let mut line = Vec::new();
        while err.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&line);
            let _ = line_tx.send(nanovisor_tests::strip_ansi(&String::from_utf8_lossy(&line)));
            line.clear();
        }
    });
    let stderr_so_far =
        || String::from_utf8_lossy(&err_log.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    let deadline = Instant::now() + RUN_TIMEOUT;
    let addr = match peer {
        Peer::Known(a) => a,
        Peer::FromRunsc => loop {
            let left = deadline
                .min(Instant::now() + Duration::from_secs(60))
                .saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(a) = host_side(&l) {
                        break a;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "runsc printed no `(host side ADDR on IF)` line; stderr:\n{}",
                        stderr_so_far()
                    );
                }
            }
        },
    };
    // The program may have failed already: a broken pipe here shows in its outcome.
    let _ = writeln!(stdin, "{addr}");
    drop(stdin);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{shown} did not finish within {RUN_TIMEOUT:?}; killed. stderr:\n{}",
                    stderr_so_far()
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {shown}: {e}"),
        }
    };
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => -1,
    };
    let stdout = out_reader.join().unwrap_or_default();
    let _ = err_reader.join();
    let stderr = err_log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (
        Outcome {
            status,
            stdout,
            stderr,
        },
        addr,
    )
}

/// A TCP server on 0.0.0.0 (both the native namespace's and the sandbox's host end reach
/// it): every connection's bytes, once the peer closes, go to the returned channel.
fn allowed_port_server() -> (u16, Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("0.0.0.0:0").expect("binding the allowed-port listener");
    let port = listener.local_addr().expect("listener address").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                let mut got = Vec::new();
                let _ = conn.read_to_end(&mut got);
                let _ = tx.send(got);
            });
        }
    });
    (port, rx)
}

#[track_caller]
fn expect_hello(server: &Receiver<Vec<u8>>, run: &str) {
    match server.recv_timeout(Duration::from_secs(30)) {
        Ok(got) => assert_eq!(
            String::from_utf8_lossy(&got),
            "hello\n",
            "{run}: the allowed connection delivered something else"
        ),
        Err(_) => panic!("{run}: no connection reached the allowed-port server"),
    }
}

#[test]
fn denied_flows_get_the_errno_linux_gives_when_netfilter_rejects_them() {
    require_root();
    let ip = require_tool("ip", "iproute2");
    let iptables = require_tool("iptables", "iptables");
    let prog = guest_bin("acl_errno");
    let runsc = runsc();
    let (allowed, server) = allowed_port_server();
    let denied = PORT_DENIED.to_string();
    let allowed = allowed.to_string();
    let args = [denied.as_str(), allowed.as_str(), POLL_MS];

    // Natively, behind iptables rules.
    let native = {
        let net = NativeNet::create(&ip, &iptables);
        let (outcome, _) = run_with_peer(net.command(&prog, &args), Peer::Known(net.host_addr));
        outcome
    };
    eprintln!(
        "--- native (iptables REJECT/DROP) ---\n{}--- native stderr ---\n{}",
        native.stdout_str(),
        native.stderr_str()
    );
    assert_eq!(
        native.status, 0,
        "acl_errno natively exited with {} (the allowed connect must succeed)",
        native.status
    );
    let text = native.stdout_str();
    assert!(
        text.contains("c udp sendto denied: -1 EPERM\n"),
        "natively the iptables rule did not deny the UDP datagram:\n{text}"
    );
    expect_hello(&server, "native");

    // Sandboxed, behind the same rules as an ACL policy. The host side's address is only
    // known once runsc has set up the network, so the rules name runsc's sandbox subnet.
    let dir = TempDir::new();
    let policy = dir.0.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "version: 1\n\
             defaults: {{egress: allow, ingress: allow, listen: allow}}\n\
             audit: denies\n\
             rules:\n\
            \x20 - id: deny-tcp\n\
            \x20   egress: {{protocol: tcp, to: [10.201.0.0/16], ports: [{PORT_DENIED}]}}\n\
            \x20   action: deny\n\
            \x20 - id: deny-udp\n\
            \x20   egress: {{protocol: udp, to: [10.201.0.0/16], ports: [{PORT_DENIED}]}}\n\
            \x20   action: deny\n"
        ),
    )
    .expect("writing the policy");
    let audit = dir.0.join("audit.log");
    let mut cmd = Command::new(&runsc);
    cmd.args(["do", "--network", "sandbox", "--rootfs", "/"])
        .arg("--acl")
        .arg(&policy)
        .arg("--audit-log")
        .arg(&audit);
    for (k, v) in CLEAN_ENV {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    cmd.arg("--").arg(&prog).args(args);
    let (sandboxed, host) = run_with_peer(cmd, Peer::FromRunsc);
    eprintln!(
        "--- sandbox (ACL deny) ---\n{}--- sandbox stderr ---\n{}",
        sandboxed.stdout_str(),
        sandboxed.stderr_str()
    );
    assert_eq!(
        host.octets()[..2],
        [10, 201],
        "the policy denies 10.201.0.0/16, but the sandbox's host side is {host}"
    );

    // The audit log has a deny for each denied protocol, to the host side's denied port.
    let log = std::fs::read_to_string(&audit)
        .unwrap_or_else(|e| panic!("reading the audit log {}: {e}", audit.display()));
    let denies: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.contains("\"verdict\":\"deny\""))
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?} is not JSON: {e}"))
        })
        .collect();
    for (proto, rule) in [("tcp", "deny-tcp"), ("udp", "deny-udp")] {
        assert!(
            denies.iter().any(|v| v["direction"] == "egress"
                && v["protocol"] == proto
                && v["remote"] == format!("{host}:{PORT_DENIED}")
                && v["rule"] == rule),
            "no egress {proto} deny to {host}:{PORT_DENIED} by rule {rule} in the audit log:\n{log}"
        );
    }
    assert!(
        !denies
            .iter()
            .any(|v| v["remote"] == format!("{host}:{allowed}")),
        "the allowed port was denied:\n{log}"
    );

    if sandboxed.status == 0 {
        expect_hello(&server, "sandbox");
    }
    assert_same_outcome(
        &format!(
            "acl_errno {} (native: iptables REJECT tcp / DROP udp; sandbox: ACL deny)",
            args.join(" ")
        ),
        &native,
        &sandboxed,
    );
}
