//! The security acceptance line of issue 5, on real guests in real sandboxes: each test
//! runs `runsc run` on an OCI bundle made from `runsc spec`, so the sandbox process is
//! confined as in production (its own namespaces, an empty root, no capabilities but one,
//! the seccomp allowlist, a host cgroup).
//!
//! - Isolation: the guest sees none of the host's processes, none of its files outside
//!   the container's root (whichever way it asks: `..`, planted symbolic links,
//!   `/proc/self/root`, `/proc/1/root`, `/proc/self/cwd`, a directory fd), and none of
//!   its network interfaces.
//! - Seccomp: a sentry that makes a host syscall outside its policy (a debug hook only
//!   the operator can enable) kills its own sandbox, which `runsc` reports, and nothing
//!   else; without the hook the same guest just gets ENOSYS.
//! - Memory: a guest that touches more than its memory limit is OOM-killed (137), the log
//!   and `runsc events` say so; one allocation larger than the limit gets ENOMEM.
//! - The guest's /proc/meminfo (and Node's `os.totalmem()`) is its own memory.
//!
//! Needs root, /dev/kvm and a cgroup hierarchy; fails, not skips, without them.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nanovisor_tests::{guest_bin, runsc, strip_ansi, NODE, TIMEOUT};

/// What a finished `runsc` left behind.
struct Out {
    /// The exit code, or 128+N for a fatal signal N.
    code: i32,
    stdout: String,
    stderr: String,
}

/// A scratch directory with a state root, removed (after deleting any container it
/// holds) on drop.
struct Scratch {
    dir: PathBuf,
    ids: Vec<String>,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        // Short: the control socket's path under it must fit in sun_path.
        let dir = PathBuf::from(format!("/tmp/nv-conf-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a scratch directory");
        Scratch {
            dir,
            ids: Vec::new(),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// A container id unique to this test run, deleted with the scratch directory.
    fn id(&mut self, name: &str) -> String {
        let id = format!("{name}-{}", std::process::id());
        self.ids.push(id.clone());
        id
    }

    /// A bundle `name` from `runsc spec`, running `args` on `rootfs` (read-only) with
    /// `memory` bytes as its memory limit.
    fn bundle(&self, name: &str, rootfs: &Path, args: &[&str], memory: Option<u64>) -> PathBuf {
        let bundle = self.dir.join(name);
        std::fs::create_dir_all(&bundle).expect("mkdir bundle");
        let out = self.runsc(&[], &["spec", "--bundle", path_str(&bundle)]);
        assert_eq!(out.code, 0, "runsc spec: {}", out.stderr);
        let config = bundle.join("config.json");
        let text = std::fs::read_to_string(&config).expect("config.json");
        let mut spec: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(args);
        spec["root"] = serde_json::json!({"path": rootfs, "readonly": true});
        if let Some(limit) = memory {
            spec["linux"]["resources"]["memory"] = serde_json::json!({ "limit": limit });
        }
        std::fs::write(&config, spec.to_string()).expect("writing config.json");
        bundle
    }

    /// `runsc --root STATE ARGS` with `env` added to this process's environment. Its
    /// output goes through files: a sandbox started by `run --detach` keeps the stdio it
    /// was given, so pipes would never reach end of file.
    fn runsc(&self, env: &[(&str, &str)], args: &[&str]) -> Out {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let out_path = self.dir.join(format!("out-{n}"));
        let err_path = self.dir.join(format!("err-{n}"));
        let mut child = Command::new(runsc())
            .arg("--root")
            .arg(self.root())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).expect("stdout file"))
            .stderr(std::fs::File::create(&err_path).expect("stderr file"))
            .spawn()
            .expect("running runsc");
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for runsc") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("runsc {} did not finish within {TIMEOUT:?}", args.join(" "));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let out = Out {
            code: status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(-1),
            stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: strip_ansi(&std::fs::read_to_string(&err_path).unwrap_or_default()),
        };
        eprintln!(
            "runsc {}: exit {}\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            out.code,
            out.stdout,
            out.stderr
        );
        out
    }

    /// `runsc state ID`'s status, or None if the container does not exist.
    fn status(&self, id: &str) -> Option<String> {
        let out = self.runsc(&[], &["state", id]);
        if out.code != 0 {
            assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
            return None;
        }
        let state: serde_json::Value = serde_json::from_str(&out.stdout).expect("state JSON");
        Some(state["status"].as_str().expect("status").to_owned())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.ids) {
            let _ = Command::new(runsc())
                .arg("--root")
                .arg(self.root())
                .args(["delete", "--force", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("scratch paths are UTF-8")
}

/// A root file system holding only the static guest programs `names` (at `/NAME`).
fn rootfs_with(dir: &Path, names: &[&str]) -> PathBuf {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("mkdir rootfs");
    for name in names {
        std::fs::copy(guest_bin(name), rootfs.join(name)).expect("copying a guest program");
    }
    rootfs
}

/// Appends `mount` to the `mounts` of `bundle`'s config.json.
fn add_mount(bundle: &Path, mount: serde_json::Value) {
    let config = bundle.join("config.json");
    let text = std::fs::read_to_string(&config).expect("config.json");
    let mut spec: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    spec["mounts"]
        .as_array_mut()
        .expect("mounts from runsc spec")
        .push(mount);
    std::fs::write(&config, spec.to_string()).expect("writing config.json");
}

/// The value after `prefix` on the line that starts with it.
fn line_value<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(prefix))
}

/// The host's network interface names.
fn host_interfaces() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .expect("reading the host's /sys/class/net")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// SIGSYS on x86-64: what seccomp's kill action ends a process with.
const SIGSYS: i32 = 31;

/// Interfaces a sandbox may show: its own loopback and its pod interface.
const SANDBOX_INTERFACES: [&str; 2] = ["lo", "eth0"];

#[test]
fn a_guest_sees_nothing_of_the_host() {
    let mut s = Scratch::new("iso");
    // The host's secret, beside (not under) the bundle: D/outside/marker.
    let secret = format!("HOST-SECRET-{}-{:?}", std::process::id(), Instant::now());
    let outside = s.dir.join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir outside");
    let marker = outside.join("marker");
    std::fs::write(&marker, format!("{secret}\n")).expect("writing the marker");

    // D/iso/rootfs: the guest and links planted to lead out of it.
    let bundle_dir = s.dir.join("iso");
    let rootfs = rootfs_with(&bundle_dir, &["isolation"]);
    std::fs::create_dir_all(rootfs.join("sub")).expect("mkdir sub");
    let rel = "../../outside/marker";
    let links: [(&str, PathBuf); 6] = [
        ("abs_link", marker.clone()),
        ("rel_link", rel.into()),
        ("dir_link", outside.clone()),
        ("sub/deep_link", "../../../outside/marker".into()),
        ("chain1", "/chain2".into()),
        ("chain2", "../../outside".into()),
    ];
    for (name, target) in &links {
        std::os::unix::fs::symlink(target, rootfs.join(name)).expect("planting a symlink");
    }
    // Followed on the host, each link does reach the secret: the probes are real.
    for path in ["abs_link", "rel_link", "dir_link/marker", "sub/deep_link"] {
        let text = std::fs::read_to_string(rootfs.join(path)).expect("host-side follow");
        assert!(text.contains(&secret), "{path} does not lead to the marker");
    }
    assert!(std::fs::read_to_string(rootfs.join(rel)).is_ok_and(|t| t.contains(&secret)));
    // D/vol: a writable volume at /vol, with links of the host's own leading out.
    let volume = s.dir.join("vol");
    std::fs::create_dir_all(&volume).expect("mkdir vol");
    std::fs::create_dir_all(rootfs.join("vol")).expect("mkdir rootfs/vol");
    std::os::unix::fs::symlink(&marker, volume.join("planted_abs")).expect("symlink");
    std::os::unix::fs::symlink("../outside/marker", volume.join("planted_rel")).expect("symlink");

    let host_pid = std::process::id().to_string();
    let host_ifaces = host_interfaces();
    let host_only: Vec<&String> = host_ifaces
        .iter()
        .filter(|n| !SANDBOX_INTERFACES.contains(&n.as_str()))
        .collect();
    eprintln!("host interfaces: {host_ifaces:?}; host-only: {host_only:?}");
    // Host services the guest must not reach: a TCP port on the host's loopback and an
    // abstract AF_UNIX name (both would be reachable from a host process here).
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("host TCP listener");
    let port = tcp.local_addr().expect("port").port().to_string();
    let abstract_name = format!("nv-host-{}", std::process::id());
    let unix = {
        use std::os::linux::net::SocketAddrExt as _;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .expect("abstract address");
        std::os::unix::net::UnixListener::bind_addr(&addr).expect("host abstract listener")
    };
    let mut args = vec![
        "/isolation",
        host_pid.as_str(),
        path_str(&marker),
        rel,
        &port,
        &abstract_name,
    ];
    args.extend(host_ifaces.iter().map(String::as_str));
    let bundle = s.bundle("iso", &rootfs, &args, None);
    add_mount(
        &bundle,
        serde_json::json!({"destination": "/vol", "type": "bind", "source": volume,
                           "options": ["rbind", "rw"]}),
    );
    let id = s.id("iso");
    let pid_file = s.dir.join("iso.pid");
    let out = s.runsc(
        &[],
        &[
            "run",
            "--bundle",
            path_str(&bundle),
            "--pid-file",
            path_str(&pid_file),
            &id,
        ],
    );
    assert_eq!(out.code, 0, "the guest failed: {}", out.stderr);
    let text = &out.stdout;
    assert!(
        text.ends_with("done\n"),
        "the guest did not finish:\n{text}"
    );

    // Files: nothing reads the secret or even finds it.
    assert!(
        !text.contains(&secret),
        "the guest read the host's file:\n{text}"
    );
    let probes: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("open ") || l.starts_with("stat "))
        .collect();
    assert!(probes.len() >= 40, "too few probes ran:\n{text}");
    for line in &probes {
        let (_, result) = line.split_once(": ").expect("probe line");
        assert!(
            result.starts_with('E'),
            "a path outside the root resolved: {line}"
        );
        assert!(
            !result.starts_with("EXISTS"),
            "a path outside the root exists for the guest: {line}"
        );
    }
    for (link, want) in [
        ("/proc/self/root", "/"),
        ("/proc/1/root", "/"),
        ("/proc/self/cwd", "/"),
        ("/proc/self/exe", "/isolation"),
    ] {
        assert_eq!(
            line_value(text, &format!("readlink {link}: ")),
            Some(want),
            "{link}\n{text}"
        );
    }
    assert_eq!(line_value(text, "getcwd in /..: "), Some("/"));
    assert_eq!(line_value(text, "getcwd in /sub/..: "), Some("/"));
    let root_list = line_value(text, "list root:").expect("root listing");
    assert_eq!(line_value(text, "list root-dotdot:"), Some(root_list));
    assert_eq!(
        line_value(text, "list proc-self-root-dotdot:"),
        Some(root_list)
    );
    for name in ["isolation", "abs_link", "sub"] {
        assert!(root_list.split(' ').any(|n| n == name), "{root_list}");
    }
    for host_name in ["outside", "iso", "state", "config.json", "rootfs"] {
        assert!(
            !root_list.split(' ').any(|n| n == host_name),
            "the guest's / lists the host's {host_name}: {root_list}"
        );
    }
    // No host path shows through /proc (mounts, maps, fd links).
    assert!(
        !text.contains(path_str(&s.dir)),
        "a host path leaked into the guest:\n{text}"
    );

    // The volume took the guest's links (so the probes through them were real), and
    // none of them reached the host's file: it still has one name, and no copy exists.
    for made in [
        "symlink vol-rel",
        "symlink vol-abs",
        "symlink vol-up",
        "rename vol",
    ] {
        assert_eq!(line_value(text, &format!("{made}: ")), Some("OK"), "{made}");
    }
    assert!(volume.join("d/up").is_symlink() && volume.join("esc_rel").is_symlink());
    let meta = std::fs::metadata(&marker).expect("marker");
    assert_eq!(
        std::os::unix::fs::MetadataExt::nlink(&meta),
        1,
        "the guest hard-linked the host's file"
    );
    for name in ["hard_esc", "hard_planted"] {
        let copy = std::fs::read_to_string(volume.join(name)).unwrap_or_default();
        assert!(!copy.contains(&secret), "/vol/{name} holds the secret");
    }

    // Processes: only the guest's own.
    assert_eq!(line_value(text, "pid "), Some("1"));
    assert_eq!(line_value(text, "ppid "), Some("0"));
    let sandbox_pid = std::fs::read_to_string(&pid_file).expect("pid file");
    let entries: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("proc-entry "))
        .collect();
    assert_eq!(entries, ["1"], "/proc lists more than the guest");
    assert!(!entries.contains(&host_pid.as_str()));
    assert!(!entries.contains(&sandbox_pid.trim()));
    assert_eq!(line_value(text, "kill-host: "), Some("ESRCH"));
    assert_eq!(line_value(text, "proc-host: "), Some("ENOENT"));

    // Sockets: the guest's loopback and abstract names are its own.
    for (what, listener_alive) in [
        ("host-tcp", tcp.local_addr().is_ok()),
        ("host-abstract", unix.local_addr().is_ok()),
    ] {
        assert!(listener_alive);
        let result = line_value(text, &format!("connect {what}: ")).expect("connect line");
        assert!(
            result.starts_with('E'),
            "the guest reached the host's {what}"
        );
    }

    // Network interfaces: at most the sandbox's own, whichever way the guest asks.
    let seen: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("iface "))
        .filter_map(|l| l.split_once(' ').map(|(_, name)| name))
        .collect();
    for name in &seen {
        assert!(
            SANDBOX_INTERFACES.contains(name),
            "the guest sees interface {name:?}:\n{text}"
        );
    }
    if let Some(list) = line_value(text, "list sys-class-net:") {
        for name in list.split_whitespace() {
            assert!(SANDBOX_INTERFACES.contains(&name), "/sys/class/net: {list}");
        }
    }
    for name in &host_only {
        assert!(
            !text.contains(name.as_str()),
            "the host's {name} shows in the guest:\n{text}"
        );
    }
    for (i, name) in host_ifaces.iter().enumerate() {
        let result = line_value(text, &format!("ifindex arg{}: ", i + 6)).expect("ifindex line");
        if !SANDBOX_INTERFACES.contains(&name.as_str()) {
            assert!(
                result.starts_with('E'),
                "SIOCGIFINDEX found the host's {name}: {result}"
            );
        }
    }
}

/// Waits (a minute at most) until `path` holds `what`; its text.
/// Wait for `path` to contain `what`; on failure show it and the sandbox's log `log`.
fn wait_for_text(path: &Path, what: &str, log: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never said {what:?}:\n{text}\nthe sandbox's log, {}:\n{}",
            path.display(),
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the host still has container `id`'s cgroup (v1 memory or v2).
fn has_cgroup(id: &str) -> bool {
    ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"]
        .iter()
        .any(|root| Path::new(root).join("nanovisor").join(id).exists())
}

#[test]
fn a_sentry_breaking_its_seccomp_policy_kills_only_its_sandbox() {
    let mut s = Scratch::new("sys");
    // A bystander sandbox, started first, that must live through the other's death.
    let bystander_bundle = s.bundle("by", Path::new("/"), &["/bin/sleep", "600"], None);
    let bystander = s.id("by");
    let out = s.runsc(
        &[],
        &[
            "run",
            "--detach",
            "--bundle",
            path_str(&bystander_bundle),
            &bystander,
        ],
    );
    assert_eq!(out.code, 0, "starting the bystander: {}", out.stderr);

    let rootfs = rootfs_with(&s.dir.join("hook"), &["debughook"]);
    let bundle = s.bundle("hook", &rootfs, &["/debughook"], None);
    let id = s.id("hook");
    let hooks = [("NANOVISOR_DEBUG_HOOKS", "1")];
    let out = s.runsc(
        &hooks,
        &["run", "--keep", "--bundle", path_str(&bundle), &id],
    );
    // runc's convention for a process killed by a signal: 128 + SIGSYS.
    assert_eq!(out.code, 128 + SIGSYS, "{}", out.stderr);
    assert!(
        out.stdout.contains("calling the debug hook"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("still running"),
        "the guest went on after the sentry broke its policy"
    );
    assert!(
        out.stderr.contains("was killed by signal 31 (SIGSYS)")
            && out.stderr.contains("seccomp policy"),
        "no clear report on stderr: {}",
        out.stderr
    );
    assert_eq!(s.status(&id).as_deref(), Some("stopped"));
    let out = s.runsc(&[], &["delete", &id]);
    assert_eq!(out.code, 0, "delete: {}", out.stderr);
    assert_eq!(s.status(&id), None, "delete left the container behind");
    assert!(!s.root().join(&id).exists(), "delete left state behind");
    assert!(!has_cgroup(&id), "delete left the cgroup behind");

    // The host and the other sandbox are fine.
    assert_eq!(s.status(&bystander).as_deref(), Some("running"));
    let out = s.runsc(&[], &["exec", &bystander, "/bin/echo", "still", "here"]);
    assert_eq!(out.code, 0, "exec in the bystander: {}", out.stderr);
    assert_eq!(out.stdout, "still here\n");

    // Without the operator's switch the hook is an unknown syscall and nothing happens.
    let plain = s.id("plain");
    let out = s.runsc(&[], &["run", "--bundle", path_str(&bundle), &plain]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "calling the debug hook\ndebug hook: ENOSYS\nstill running\n"
    );
    // As Linux itself answers (the conformance oracle).
    let native = Command::new(guest_bin("debughook"))
        .output()
        .expect("running debughook natively");
    assert_eq!(String::from_utf8_lossy(&native.stdout), out.stdout);
    // Nor can the guest turn it on: the variable in the container's environment is the
    // guest's, not the sandbox process's.
    let guest_env = s.bundle("hook-env", &rootfs, &["/debughook"], None);
    let config = guest_env.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).expect("config")).expect("JSON");
    spec["process"]["env"]
        .as_array_mut()
        .expect("env")
        .push("NANOVISOR_DEBUG_HOOKS=1".into());
    std::fs::write(&config, spec.to_string()).expect("config");
    let guest_set = s.id("guestset");
    let out = s.runsc(&[], &["run", "--bundle", path_str(&guest_env), &guest_set]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("debug hook: ENOSYS"), "{}", out.stdout);

    let out = s.runsc(&[], &["delete", "--force", &bystander]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// 256 MiB: the least guest memory a sandbox gets.
const LIMIT: u64 = 256 << 20;

#[test]
fn a_guest_over_its_memory_limit_is_oom_killed() {
    let mut s = Scratch::new("oom");
    let rootfs = rootfs_with(&s.dir.join("hog"), &["memhog"]);
    let bundle = s.bundle("hog", &rootfs, &["/memhog", "touch"], Some(LIMIT));
    let id = s.id("hog");
    let log = s.dir.join("hog.log");
    let out = s.runsc(
        &[],
        &[
            "--log",
            path_str(&log),
            "run",
            "--bundle",
            path_str(&bundle),
            &id,
        ],
    );
    assert_eq!(out.code, 128 + 9, "not OOM-killed: {}", out.stderr);
    // It got most of its memory before the kill (and was not stopped by anything else).
    assert!(out.stdout.contains("touched 192 MiB"), "{}", out.stdout);
    assert!(!out.stdout.contains("malloc: NULL"), "{}", out.stdout);
    let log_text = strip_ansi(&std::fs::read_to_string(&log).expect("log"));
    assert!(
        log_text.contains("init 1 (memhog) killed by the out-of-memory killer"),
        "the log does not say why the init died:\n{log_text}"
    );

    // Detached: the sandbox ends with its own container's init, and `runsc state` still
    // says why from the mark the sandbox process left in the container's state directory
    // (what containerd's shim asks to report `OOMKilled`).
    let id = s.id("hog-detached");
    let out = s.runsc(
        &[],
        &["run", "--detach", "--bundle", path_str(&bundle), &id],
    );
    assert_eq!(out.code, 0, "run --detach: {}", out.stderr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let state = loop {
        let out = s.runsc(&[], &["state", &id]);
        let state: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("runsc state: {e}: {} {}", out.stdout, out.stderr));
        if state["status"] == "stopped" {
            break state;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not stopped after 60 s: {state}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(state["oomKilled"], true, "runsc state: {state}");
}

/// A process whose child was OOM-killed can use the child's memory as soon as it learns
/// of the death: the sentry frees a dead process's frames before it notifies the parent,
/// as Linux does (it once did so after, and the parent, finding no frame, was OOM-killed
/// in turn: now and then when idle, often on a loaded machine).
#[test]
fn a_parent_gets_its_oom_killed_childs_memory_back_at_once() {
    let mut s = Scratch::new("regrow");
    let rootfs = rootfs_with(&s.dir.join("regrow"), &["memhog"]);
    let bundle = s.bundle(
        "regrow",
        &rootfs,
        &["/memhog", "children", "5"],
        Some(LIMIT),
    );
    let id = s.id("regrow");
    let out = s.runsc(&[], &["run", "--bundle", path_str(&bundle), &id]);
    // The parent's lines, without the children's progress.
    let parent: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("touched "))
        .map(str::to_owned)
        .collect();
    let expected: Vec<String> = (1..=5)
        .map(|i| format!("child {i}: killed by signal 9; the parent allocates 32 MiB: ok"))
        .collect();
    assert_eq!((out.code, parent), (0, expected), "{}", out.stderr);
}

#[test]
fn one_allocation_larger_than_memory_is_enomem() {
    let mut s = Scratch::new("big");
    let rootfs = rootfs_with(&s.dir.join("big"), &["memhog"]);
    let twice = ((2 * LIMIT) >> 20).to_string();
    let bundle = s.bundle("big", &rootfs, &["/memhog", "bigmap", &twice], Some(LIMIT));
    let id = s.id("big");
    let out = s.runsc(&[], &["run", "--bundle", path_str(&bundle), &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "mmap 512 MiB: ENOMEM\nmalloc 512 MiB: ENOMEM\nsbrk 512 MiB: ENOMEM\n\
         break unchanged: yes\nmalloc 16 MiB and touch: ok\n"
    );
}

/// The memory limit of sandbox `id`'s host cgroup and how many processes the host's OOM
/// killer has killed in it (cgroup v1's memory controller, else v2).
fn host_memcg(id: &str) -> (u64, u64) {
    let read = |path: PathBuf| std::fs::read_to_string(&path).ok();
    let number = |text: &str| text.trim().parse::<u64>().expect("a number");
    let oom_kills = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .map_or(0, number)
    };
    let v1 = Path::new("/sys/fs/cgroup/memory/nanovisor").join(id);
    if let Some(limit) = read(v1.join("memory.limit_in_bytes")) {
        let control = read(v1.join("memory.oom_control")).expect("memory.oom_control");
        return (number(&limit), oom_kills(&control));
    }
    let v2 = Path::new("/sys/fs/cgroup/nanovisor").join(id);
    let limit = read(v2.join("memory.max")).expect("no memory cgroup for the sandbox");
    let events = read(v2.join("memory.events")).expect("memory.events");
    (number(&limit), oom_kills(&events))
}

/// The first line of `child`'s stdout that contains `what`, within a minute.
fn read_until(child: &mut Child, what: &str) -> Option<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(what) => return Some(line),
            Ok(line) => eprintln!("events: {line}"),
            Err(_) => return None,
        }
    }
    None
}

/// `runsc events` reports an OOM kill in a running container; the host's own OOM killer
/// never fired (the cgroup leaves room for the sentry), and the sandbox lives on.
#[test]
fn events_report_an_oom_kill_and_the_sandbox_survives_it() {
    let mut s = Scratch::new("ev");
    let rootfs = rootfs_with(&s.dir.join("ev"), &["memhog"]);
    let bundle = s.bundle("ev", &rootfs, &["/memhog", "child"], Some(LIMIT));
    let id = s.id("ev");
    let guest_out = s.dir.join("guest-stdout");
    let status = Command::new(runsc())
        .arg("--root")
        .arg(s.root())
        .args(["run", "--detach", "--bundle", path_str(&bundle), &id])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&guest_out).expect("guest stdout"))
        .stderr(Stdio::inherit())
        .status()
        .expect("runsc run");
    assert!(status.success());
    let boot_log = s.root().join(&id).join("boot.log");
    let text = wait_for_text(&guest_out, "parent allocates after the kill", &boot_log);
    assert!(text.contains("child killed by signal 9"), "{text}");
    assert!(
        text.contains("parent allocates after the kill: ok"),
        "{text}"
    );
    assert_eq!(s.status(&id).as_deref(), Some("running"));

    let mut events = Command::new(runsc())
        .arg("--root")
        .arg(s.root())
        .args(["events", "--interval", "100ms", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("runsc events");
    let oom = read_until(&mut events, "\"oom\"");
    let _ = events.kill();
    let _ = events.wait();
    let oom = oom.expect("runsc events never reported the OOM kill");
    let event: serde_json::Value = serde_json::from_str(&oom).expect("event JSON");
    assert_eq!(event, serde_json::json!({"type": "oom", "id": id}));

    // The host cgroup: the spec's limit plus room for the sentry, and its OOM killer
    // never fired: the guest's did.
    let (limit, host_ooms) = host_memcg(&id);
    eprintln!("host cgroup: limit {limit}, OOM kills {host_ooms}");
    assert!(limit >= LIMIT + (128 << 20), "cgroup limit {limit}");
    assert_eq!(
        host_ooms, 0,
        "the host's OOM killer fired in the sandbox's cgroup"
    );
    let out = s.runsc(&[], &["delete", "--force", &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// The guest's memory is what its limit says: /proc/meminfo, sysinfo and Node agree.
#[test]
fn node_sees_the_guests_memory() {
    if !Path::new(NODE).is_file() {
        eprintln!("skipped: no {NODE}");
        return;
    }
    let mut s = Scratch::new("node");
    let memory: u64 = 512 << 20;
    let script = "const os = require('os'); const fs = require('fs');\
        const info = fs.readFileSync('/proc/meminfo', 'utf8');\
        const kb = (k) => Number(info.match(new RegExp('^' + k + ':\\\\s+(\\\\d+) kB', 'm'))[1]);\
        const cpus = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^processor/mg).length;\
        console.log(JSON.stringify({total: os.totalmem(), free: os.freemem(),\
          memTotal: kb('MemTotal'), memAvailable: kb('MemAvailable'), cpus}));";
    let bundle = s.bundle("node", Path::new("/"), &[NODE, "-e", script], Some(memory));
    let id = s.id("node");
    let out = s.runsc(&[], &["run", "--bundle", path_str(&bundle), &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("JSON line");
    assert_eq!(seen["total"], memory, "os.totalmem()");
    assert_eq!(seen["memTotal"], memory / 1024, "MemTotal");
    let free = seen["free"].as_u64().expect("free");
    assert!(free > 0 && free < memory, "os.freemem() = {free}");
    let available = seen["memAvailable"].as_u64().expect("MemAvailable");
    assert!(available > 0 && available < memory / 1024, "{seen}");
    assert!(seen["cpus"].as_u64().is_some_and(|n| n >= 1), "{seen}");
}
