//! Guest networking: loopback conformance, and a sandbox with its own network namespace
//! (`runsc do --network sandbox`) serving the host, fetching from it, and held to an ACL
//! policy (five-tuple, DNS names with to_fqdn, listen ports) with an audit log.
//!
//! The namespace tests need root and iproute2; `wrk` and `tcpdump` must be installed
//! (`.ci/run` installs them). They fail, not skip, when something is missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nanovisor_tests::dns_server::TestDnsServer;
use nanovisor_tests::{check_guest, check_node, node_script, runsc, CLEAN_ENV, NODE};

#[test]
fn sockets_match_linux() {
    check_guest("sockets", &[], 0);
}

#[test]
fn node_http_over_loopback_matches_linux() {
    check_node("http_loopback.js", &[], 0);
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc_geteuid() };
    assert_eq!(
        euid, 0,
        "the --network sandbox tests create network namespaces and need root"
    );
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn require_tool(tool: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
        let p = Path::new(dir).join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!("{tool} is not installed (apt-get install {tool}; .ci/run installs it)");
}

/// A running `runsc do --network sandbox … -- node SCRIPT`.
struct Sandbox {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr_log: std::sync::Arc<std::sync::Mutex<String>>,
    guest: Ipv4Addr,
    host: Ipv4Addr,
    host_if: String,
}

impl Sandbox {
    fn start(runsc_args: &[&str], script: &str, script_args: &[&str]) -> Sandbox {
        require_root();
        let mut cmd = Command::new(runsc());
        cmd.arg("do")
            .arg("--network")
            .arg("sandbox")
            .args(runsc_args);
        for (k, v) in CLEAN_ENV {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.arg("--")
            .arg(NODE)
            .arg(node_script(script))
            .args(script_args)
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
        let stderr_log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
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
        // runsc: sandbox ID: address 10.201.N.2/24 (host side 10.201.N.1 on nvXXXXXXXX)
        let deadline = Instant::now() + Duration::from_secs(30);
        let line = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match err_rx.recv_timeout(left) {
                Ok(l) if l.contains(": address ") => break l,
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "runsc printed no sandbox address; stderr:\n{}",
                        stderr_log.lock().unwrap_or_else(|e| e.into_inner())
                    );
                }
            }
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let field = |after: &str| -> &str {
            let i = words
                .iter()
                .position(|w| *w == after)
                .unwrap_or_else(|| panic!("no {after:?} in {line:?}"));
            words[i + 1].trim_end_matches(')')
        };
        let guest = field("address")
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("bad address in {line:?}"));
        let host = field("side")
            .parse()
            .unwrap_or_else(|_| panic!("bad host address in {line:?}"));
        let host_if = field("on").to_string();
        Sandbox {
            child,
            stdin,
            stdout,
            stderr_log,
            guest,
            host,
            host_if,
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

    /// Send a command line to the guest and return its one-line answer.
    fn ask(&mut self, command: &str) -> String {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").expect("writing to the guest");
        stdin.flush().expect("flushing");
        self.line(Duration::from_secs(30))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP server on the host: answers every request with `body`.
fn host_http_server(body: &'static str) -> u16 {
    let l = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in l.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 4096];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes());
            });
        }
    });
    port
}

/// GET `path` from `addr` over HTTP/1.0; the status line and body.
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("response");
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
fn a_node_server_in_the_sandbox_serves_the_host_and_wrk() {
    let wrk = require_tool("wrk");
    let fwd = free_port();
    let sb = Sandbox::start(&["-p", &format!("{fwd}:8080")], "net_server.js", &["8080"]);
    assert_eq!(sb.line(Duration::from_secs(30)), "ready");
    let guest = SocketAddr::new(IpAddr::V4(sb.guest), 8080);
    assert_eq!(http_get(guest, "/"), "HTTP/1.1 200 OK | count 1");
    let forwarded = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), fwd);
    assert_eq!(http_get(forwarded, "/"), "HTTP/1.1 200 OK | count 2");
    let out = Command::new(wrk)
        .args(["-t1", "-c8", "-d2s", "--timeout", "5s"])
        .arg(format!("http://{guest}/"))
        .output()
        .expect("running wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed:\n{text}");
    assert!(
        !text.contains("Socket errors") && !text.contains("Non-2xx"),
        "wrk saw errors:\n{text}\nrunsc stderr:\n{}",
        sb.stderr()
    );
    let requests: u64 = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        requests >= 100,
        "wrk made only {requests} requests:\n{text}"
    );
    // The server still counts: every wrk request reached it.
    let after = http_get(guest, "/");
    let n: u64 = after
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(n >= requests + 3, "{after} after {requests} wrk requests");
}

#[test]
fn a_node_client_in_the_sandbox_fetches_from_the_host() {
    let port = host_http_server("hello-from-host");
    let mut sb = Sandbox::start(&[], "net_client.js", &[]);
    let url = format!("http://{}:{port}/", sb.host);
    assert_eq!(
        sb.ask(&format!("get {url}")),
        format!("get {url} 200 hello-from-host")
    );
}

#[test]
fn a_denied_host_gets_econnrefused_an_audit_line_and_never_a_syn() {
    let tcpdump = require_tool("tcpdump");
    let allowed = host_http_server("allowed");
    let denied = host_http_server("denied");
    let dir = tempdir("acl-deny");
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "version: 1\naudit: denies\nrules:\n  - id: no-host-port\n    egress:\n      protocol: tcp\n      to: [10.201.0.0/16]\n      ports: [{denied}]\n    action: deny\n"
        ),
    )
    .expect("writing the policy");
    let audit = dir.join("audit.log");
    let mut sb = Sandbox::start(
        &[
            "--acl",
            policy.to_str().expect("utf-8"),
            "--audit-log",
            audit.to_str().expect("utf-8"),
        ],
        "net_client.js",
        &[],
    );
    // Capture SYNs leaving the sandbox on its host veth.
    let mut dump = Command::new(tcpdump)
        .args(["-i", &sb.host_if, "-n", "-l", "-Q", "in"])
        .arg("tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting tcpdump");
    let mut dump_err = BufReader::new(dump.stderr.take().expect("stderr"));
    let mut seen = String::new();
    while !seen.contains("listening on") {
        let mut line = String::new();
        if dump_err.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("tcpdump stopped: {seen}");
        }
        seen.push_str(&line);
    }
    let host = sb.host;
    let ok_url = format!("http://{host}:{allowed}/");
    let bad_url = format!("http://{host}:{denied}/");
    assert_eq!(
        sb.ask(&format!("get {ok_url}")),
        format!("get {ok_url} 200 allowed")
    );
    assert_eq!(
        sb.ask(&format!("get {bad_url}")),
        format!("get {bad_url} error ECONNREFUSED")
    );
    std::thread::sleep(Duration::from_millis(300));
    // SIGINT makes tcpdump flush and exit.
    // SAFETY: kill with a valid pid and signal has no memory-safety preconditions.
    unsafe { libc_kill(dump.id() as i32, 2) };
    let mut captured = String::new();
    dump.stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut captured)
        .expect("tcpdump output");
    let _ = dump.wait();
    assert!(
        captured.contains(&format!("{host}.{allowed}:")),
        "the capture did not even see the allowed SYN:\n{captured}"
    );
    assert!(
        !captured.contains(&format!("{host}.{denied}:")),
        "a SYN to the denied port left the sandbox:\n{captured}"
    );
    let log = std::fs::read_to_string(&audit).expect("audit log");
    let deny = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["verdict"] == "deny" && v["direction"] == "egress")
        .unwrap_or_else(|| panic!("no deny line in the audit log:\n{log}"));
    assert_eq!(deny["remote"], format!("{host}:{denied}"), "{deny}");
    assert_eq!(deny["rule"], "no-host-port", "{deny}");
    assert_eq!(deny["protocol"], "tcp", "{deny}");
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

fn tempdir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nv-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

#[test]
fn dns_policy_answers_denied_names_with_nxdomain_and_to_fqdn_opens_the_allowed_ones() {
    let web = host_http_server("via-fqdn");
    let other = host_http_server("other-port");
    // Reserve a port for the DNS server, which needs the sandbox's host address to answer.
    let dns_port = UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port");
    let dir = tempdir("dns");
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "version: 1\ndefaults: {{egress: deny, dns: deny}}\nrules:\n  - id: names\n    dns: [\"*.example.test\"]\n    action: allow\n  - id: web\n    egress: {{protocol: tcp, to_fqdn: [\"*.example.test\"], ports: [{web}]}}\n    action: allow\n"
        ),
    )
    .expect("writing the policy");
    let audit = dir.join("audit.log");
    let mut sb = Sandbox::start(
        &[
            "--acl",
            policy.to_str().expect("utf-8"),
            "--audit-log",
            audit.to_str().expect("utf-8"),
            "--dns-upstream",
            &format!("gateway:{dns_port}"),
        ],
        "net_client.js",
        &[],
    );
    let host = IpAddr::V4(sb.host);
    let server = TestDnsServer::start(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), dns_port),
        &[
            ("a.example.test", host),
            ("example.test", host),
            ("example.test.evil", host),
            ("b.other.test", host),
        ],
    )
    .expect("starting the test DNS server");
    let h = sb.host;
    // Before any lookup the address is not allowed: the rule names a domain.
    assert_eq!(
        sb.ask(&format!("get http://{h}:{web}/")),
        format!("get http://{h}:{web}/ error ECONNREFUSED")
    );
    assert_eq!(
        sb.ask("lookup a.example.test"),
        format!("lookup a.example.test {h}")
    );
    for denied in ["example.test", "example.test.evil", "b.other.test"] {
        assert_eq!(
            sb.ask(&format!("lookup {denied}")),
            format!("lookup {denied} error ENOTFOUND"),
            "{denied} should be NXDOMAIN"
        );
    }
    let url = format!("http://a.example.test:{web}/");
    assert_eq!(
        sb.ask(&format!("get {url}")),
        format!("get {url} 200 via-fqdn")
    );
    // The learned address is allowed only on the rule's port.
    let url = format!("http://a.example.test:{other}/");
    assert_eq!(
        sb.ask(&format!("get {url}")),
        format!("get {url} error ECONNREFUSED")
    );
    let asked = server.queries();
    assert!(asked.iter().any(|q| q == "a.example.test"), "{asked:?}");
    for denied in ["example.test", "example.test.evil", "b.other.test"] {
        assert!(
            !asked.iter().any(|q| q == denied),
            "the denied name {denied} reached the upstream: {asked:?}"
        );
    }
    let log = std::fs::read_to_string(&audit).expect("audit log");
    assert!(
        log.lines().any(|l| l.contains("\"direction\":\"dns\"")
            && l.contains("example.test.evil")
            && l.contains("\"verdict\":\"deny\"")),
        "no DNS deny line:\n{log}"
    );
}

#[test]
fn listen_rules_refuse_denied_ports_with_eacces() {
    let dir = tempdir("listen");
    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"version": 1, "defaults": {"listen": "deny"},
            "rules": [{"id": "http", "listen": {"protocol": "tcp", "ports": [8080]}, "action": "allow"}]}"#,
    )
    .expect("writing the policy");
    let mut sb = Sandbox::start(
        &[
            "--acl",
            policy.to_str().expect("utf-8"),
            "--audit-log",
            "/dev/null",
        ],
        "net_client.js",
        &[],
    );
    assert_eq!(sb.ask("listen 9090"), "listen 9090 error EACCES");
    assert_eq!(sb.ask("listen 8080"), "listen 8080 ok");
}

#[test]
fn a_malformed_policy_is_refused_with_the_line_that_is_wrong() {
    let dir = tempdir("bad-policy");
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - id: web\n    egress: {to: [10.0.0.0/33]}\n    action: allow\n",
    )
    .expect("writing the policy");
    let mut cmd = Command::new(runsc());
    cmd.args(["do", "--acl"])
        .arg(&policy)
        .args(["--", "/bin/true"]);
    let out = nanovisor_tests::run(cmd);
    assert_eq!(out.status, 125, "runsc must refuse the policy");
    let err = out.stderr_str();
    assert!(
        err.contains("policy.yaml")
            && err.contains("line 4")
            && err.contains("web")
            && err.contains("10.0.0.0/33"),
        "the error should name the file, line, rule and value:\n{err}"
    );
}

#[test]
fn the_documented_example_policy_is_valid() {
    let example = nanovisor_tests::workspace_root().join("docs/examples/policy.yaml");
    let mut cmd = Command::new(runsc());
    cmd.args(["do", "--acl"])
        .arg(&example)
        .args(["--", "/bin/true"]);
    let out = nanovisor_tests::run(cmd);
    assert_eq!(out.status, 0, "{}", out.stderr_str());
}

#[test]
fn publish_without_a_network_namespace_relays_over_the_sandbox_loopback() {
    let fwd = free_port();
    let mut cmd = Command::new(runsc());
    cmd.args(["do", "-p", &format!("{fwd}:8080")]);
    for (k, v) in CLEAN_ENV {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    let mut child = cmd
        .arg("--")
        .arg(NODE)
        .arg(node_script("net_server.js"))
        .arg("8080")
        .env_clear()
        .envs(CLEAN_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning runsc");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut ready = String::new();
    out.read_line(&mut ready).expect("reading");
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), fwd);
    let first = http_get(addr, "/");
    let second = http_get(addr, "/");
    drop(child.stdin.take());
    let _ = child.wait();
    assert_eq!(ready.trim(), "ready");
    assert_eq!(first, "HTTP/1.1 200 OK | count 1");
    assert_eq!(second, "HTTP/1.1 200 OK | count 2");
}

/// A network beyond the host, as an outside server would sit: a namespace with a veth to
/// the host on `10.203.N.0/24` and no route anywhere else, so it can answer the sandbox
/// only if what the sandbox sends arrives masqueraded as the host.
struct Outside {
    name: String,
    /// The namespace's own address (the host's end is `.1`).
    addr: Ipv4Addr,
    host_addr: Ipv4Addr,
}

impl Outside {
    /// The namespace for test `tag`; `slot` (0 or 1) keeps the tests of one run, which
    /// run at once, on different subnets.
    fn create(tag: &str, slot: u8) -> Outside {
        require_root();
        let pid = std::process::id();
        let name = format!("nvt-{tag}-{pid}");
        // A subnet no other test uses; the pid spreads concurrent runs.
        let n = 100 + 2 * (pid % 50) as u8 + slot;
        let host_if = format!("nvt{n}{}", &tag[..tag.len().min(4)]);
        let (host_addr, addr) = (Ipv4Addr::new(10, 203, n, 1), Ipv4Addr::new(10, 203, n, 2));
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("running ip");
            assert!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        ip(&["netns", "add", &name]);
        let outside = Outside {
            name: name.clone(),
            addr,
            host_addr,
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &name,
        ]);
        ip(&["addr", "add", &format!("{host_addr}/24"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &name, "link", "set", "eth0", "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        outside
    }

    /// Run `f` on a thread inside the namespace (sockets it opens belong there).
    fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("opening the namespace");
            use std::os::fd::AsRawFd as _;
            // SAFETY: setns on an fd we own; it moves only this thread.
            let r = unsafe { libc_setns(ns.as_raw_fd(), 0x4000_0000) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in the outside namespace")
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        // The veth goes with the namespace.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

extern "C" {
    #[link_name = "setns"]
    fn libc_setns(fd: i32, nstype: i32) -> i32;
}

/// An HTTP server that answers every request with the address the request came from.
fn peer_echo_server(listener: TcpListener) {
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            let mut conn = conn;
            let peer = conn
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{peer}",
                peer.len()
            );
            let _ = conn.write_all(resp.as_bytes());
        }
    });
}

#[test]
fn a_sandbox_reaches_beyond_the_host_masqueraded_as_the_host() {
    let outside = Outside::create("nat", 0);
    let addr = outside.addr;
    let listener = outside.inside(move || TcpListener::bind((addr, 0)).expect("bind outside"));
    let port = listener.local_addr().expect("addr").port();
    peer_echo_server(listener);
    let mut sb = Sandbox::start(&[], "net_client.js", &[]);
    let url = format!("http://{addr}:{port}/");
    // The outside server saw the host's address on its link, not the sandbox's.
    assert_eq!(
        sb.ask(&format!("get {url}")),
        format!("get {url} 200 {}", outside.host_addr),
        "runsc stderr:\n{}",
        sb.stderr()
    );
    let host_if = sb.host_if.clone();
    drop(sb);
    // The rules went with the sandbox.
    let rules = Command::new("iptables")
        .args(["-w", "-t", "nat", "-S", "POSTROUTING"])
        .output()
        .expect("iptables");
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        !rules.contains(&host_if),
        "{host_if}'s NAT rule is left:\n{rules}"
    );
}

#[test]
fn the_root_file_systems_resolv_conf_names_the_upstream_and_search_domains() {
    let outside = Outside::create("dns", 1);
    let addr = outside.addr;
    let answer = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77));
    let server = outside.inside(move || {
        TestDnsServer::start(
            SocketAddr::new(IpAddr::V4(addr), 53),
            &[("app.corp.test", answer)],
        )
        .expect("starting the DNS server outside")
    });
    // A root file system of busybox and a resolv.conf naming the outside resolver, a
    // search domain and an option.
    let root = tempdir("resolv-root");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox");
    std::fs::write(
        root.join("etc/resolv.conf"),
        format!("nameserver {addr}\nsearch corp.test\noptions ndots:2\n"),
    )
    .expect("resolv.conf");
    let out = nanovisor_tests::run({
        let mut cmd = Command::new(runsc());
        cmd.args(["do", "--network", "sandbox", "--rootfs"])
            .arg(&root)
            .args([
                "--",
                "/bin/busybox",
                "sh",
                "-c",
                "cat /etc/resolv.conf; /bin/busybox nslookup app.corp.test",
            ]);
        cmd
    });
    let text = out.stdout_str();
    assert!(
        text.contains("nameserver 127.0.0.53\nsearch corp.test\noptions ndots:2\n"),
        "the guest's resolv.conf:\n{text}\n{}",
        out.stderr_str()
    );
    assert!(
        text.contains(&answer.to_string()),
        "no answer through the proxy:\n{text}\n{}",
        out.stderr_str()
    );
    assert!(
        server.queries().iter().any(|q| q == "app.corp.test"),
        "{:?}",
        server.queries()
    );
    let _ = std::fs::remove_dir_all(&root);
}
