//! Terminals through our shim: a container with `tty: true` and `stdin: true` (its CRI log
//! shows what it printed to the terminal), and an exec with a terminal driven through
//! containerd by `ctr tasks exec -t` under `script` (a pty for ctr, so it sizes the exec's
//! terminal with ResizePty and relays its stdin): the size and the typed line reach the
//! process, its output reaches ctr before its exit.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::*;
use crate::harness::{read, Harness, CHECKPOINT_NAME};
use k8s_cri::v1::*;

/// The container: what a terminal looks like to it, and each new size (Node reads it on
/// SIGWINCH); it stays up. (One string per line: given values, Node colours them on a
/// terminal.)
const TTY_CONTAINER: &str = "const o = process.stdout; console.log(`tty ${o.isTTY} ${o.columns}`);\
    o.on('resize', () => console.log(`resized ${o.columns}x${o.rows}`));\
    setInterval(() => {}, 1000);";

/// The exec: waits for a typed line, then (by which time ctr has sent the size) prints what
/// it got and what its terminal says (synchronously: Node writes to a terminal at once), and
/// exits 3 (restoring its terminal's mode on the way, TCSETS). No single quotes: the shell
/// line that runs it quotes it with them.
const TTY_EXEC: &str = "process.stdin.once(\"data\", d => setTimeout(() => {\
    const o = process.stdout; console.log(`exec ${o.isTTY} ${o.columns} ${o.rows} got ` +\
    JSON.stringify(String(d).trim())); process.exit(3); }, 300));";

/// An exec that reads its terminal until end-of-file, as a shell does: it ends when
/// its terminal hangs up.
const WAITS_FOR_STDIN: &str = "console.log(\"waiting\"); process.stdin.resume();";

/// The terminal size `ctr` finds on its pty and sends with ResizePty.
const COLUMNS: u16 = 123;
const ROWS: u16 = 45;

pub(crate) async fn terminals(h: &Harness, cri: &mut Cri, image: &str) {
    cri.step("---- terminals through our shim ----");
    let config = cri.pod_config(h, "nanovisor-tty");
    let pod = cri.run_pod(h, &config).await;
    let mut container = node_container("tty", image, TTY_CONTAINER);
    container.tty = true;
    container.stdin = true;
    let ctr = cri.create_and_start(&pod.id, &config, container).await;

    cri.step("the tty container's log shows a terminal");
    let log = PathBuf::from(&config.log_directory).join("tty.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = read(&log);
        // The terminal turns "\n" into "\r\n"; the CRI log keeps the "\r".
        let line = text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .find_map(|l| {
                l.split_once(" stdout F tty ")
                    .map(|(_, rest)| rest.to_string())
            });
        if let Some(line) = line {
            // No size yet: CRI sends one only from a streaming client (kubectl attach).
            assert!(line.starts_with("true "), "tty container printed {line:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no `tty` line in {} after 30 s:\n{text}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let shim = shim_pid(h, &pod.id);
    let before = (relay_threads(shim), open_fds(shim));
    assert_eq!(before.0, 2, "the tty container's two relays in the shim");

    cri.step("ctr tasks exec -t under script: ResizePty, stdin, output before the exit");
    let (code, output) = ctr_tty(
        h,
        (COLUMNS, ROWS),
        &format!("tasks exec -t --exec-id ttyexec {ctr} node -e '{TTY_EXEC}'"),
        None,
        "hello tty\n",
    );
    let expected = format!("exec true {COLUMNS} {ROWS} got \"hello tty\"");
    assert!(
        output.contains(&expected),
        "ctr exec -t: want {expected:?} in its output:\n{output}"
    );
    assert_eq!(code, Some(3), "ctr exec -t's exit code; output:\n{output}");

    // ctr has deleted the exec: its relays and fds are gone from the shim.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = (relay_threads(shim), open_fds(shim));
        if now == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the exec: (relay threads, open fds) of the shim {now:?}, before {before:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    cri.step("ctr tasks exec -t ended early: the exec's terminal hangs up, the exec ends");
    let (_, output) = ctr_tty(
        h,
        (COLUMNS, ROWS),
        &format!("tasks exec -t --exec-id hangup {ctr} node -e '{WAITS_FOR_STDIN}'"),
        Some(2),
        "",
    );
    assert!(
        output.contains("waiting"),
        "the exec did not start:\n{output}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = container_pids(h, &ctr);
        if pids == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the exec still runs 10 s after ctr went: {pids} processes in the container"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    cri.step("ctr tasks attach under script: ResizePty of the container, SIGWINCH");
    let attached = ctr_tty(h, (100, 30), &format!("tasks attach {ctr}"), Some(2), "");
    let want = "resized 100x30";
    let log = read(&log);
    assert!(
        attached.1.contains(want)
            || log
                .lines()
                .any(|l| l.trim_end_matches('\r').ends_with(want)),
        "no {want:?} from the container after ctr attach sized its terminal; ctr printed:\n{}\n\
         the CRI log:\n{log}",
        attached.1
    );

    cri.stop_and_remove_container(&ctr).await;

    cri.step("a tty container that prints and exits: its line, then its exit");
    let once = tty_exits(cri, &pod.id, &config, image).await;

    cri.stop_and_remove_pod(&pod.id).await;
    crate::scenario::assert_gone(h, cri, &pod, &[&pod.id, &ctr, &once]);
}

/// A container with a terminal whose process prints a line and exits at once: it is
/// reported exited, and its CRI log has the line (the shim drains the terminal before it
/// reports the exit, and closes the stdout FIFO after). Returns its id, removed.
async fn tty_exits(cri: &mut Cri, pod: &str, config: &PodSandboxConfig, image: &str) -> String {
    let mut container = node_container("once", image, "console.log('once and done')");
    container.tty = true;
    let (ctr, status, text) = cri.run_until_exit(pod, config, container).await;
    // At exit Node restores the terminal's mode (TCSETS): it must get through the sentry
    // (else Node aborts, 134).
    assert_eq!(
        status.exit_code, 0,
        "the `once` container's exit ({}); its log:\n{}",
        status.reason, text
    );
    assert!(
        text.lines().any(|l| l
            .trim_end_matches('\r')
            .ends_with(" stdout F once and done")),
        "the `once` container's log lacks its line:\n{text}"
    );
    call(
        "RemoveContainer",
        cri.rt.remove_container(RemoveContainerRequest {
            container_id: ctr.clone(),
        }),
    )
    .await;
    ctr
}

/// A pod restored from a checkpoint image: its container cannot have a terminal (the
/// restored process keeps the stdio it was checkpointed with), and StartContainer says so.
pub(crate) async fn restored_terminal_refused(h: &Harness, cri: &mut Cri, image: &str) {
    cri.step("a terminal in a pod restored from a checkpoint image is refused");
    let mut config = cri.pod_config(h, "nanovisor-tty-restored");
    config
        .annotations
        .insert(CHECKPOINT_ANNOTATION.into(), CHECKPOINT_NAME.into());
    let pod = cri.run_pod(h, &config).await;
    let mut container = node_container("server", image, SERVER);
    container.tty = true;
    let ctr = call(
        "CreateContainer",
        cri.rt.create_container(CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(container),
            sandbox_config: Some(config.clone()),
        }),
    )
    .await
    .container_id;
    // CRI makes the task (our shim's Create) at StartContainer.
    let started = tokio::time::timeout(
        CALL_TIMEOUT,
        cri.rt.start_container(StartContainerRequest {
            container_id: ctr.clone(),
        }),
    )
    .await
    .expect("StartContainer answers");
    match started {
        Ok(_) => panic!("StartContainer of a restored container with a terminal succeeded"),
        Err(status) => assert!(
            status.message().contains("cannot have a terminal"),
            "StartContainer's error: {}",
            status.message()
        ),
    }
    call(
        "RemoveContainer",
        cri.rt.remove_container(RemoveContainerRequest {
            container_id: ctr.clone(),
        }),
    )
    .await;
    cri.stop_and_remove_pod(&pod.id).await;
    crate::scenario::assert_gone(h, cri, &pod, &[&pod.id, &ctr]);
}

/// `ctr -n k8s.io ARGS` on a pty of `script`'s sized `columns` x `rows`, with `input` typed
/// to it, ended after `limit` seconds if given (`timeout`); its exit code and what it printed.
fn ctr_tty(
    h: &Harness,
    (columns, rows): (u16, u16),
    args: &str,
    limit: Option<u32>,
    input: &str,
) -> (Option<i32>, String) {
    let timeout = limit.map_or(String::new(), |s| format!("timeout --foreground {s} "));
    let shell = format!(
        "stty cols {columns} rows {rows} && exec {timeout}ctr --address {socket} -n k8s.io {args}",
        socket = h.socket.display(),
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &shell, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running script (util-linux)");
    let mut stdin = child.stdin.take().expect("script's stdin");
    stdin.write_all(input.as_bytes()).expect("typing to script");
    let mut stdout = child.stdout.take().expect("script's stdout");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    // script ends the session when its stdin ends: keep it open until ctr is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for script") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ctr exec -t did not finish within 60 s; it printed:\n{}",
                reader.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let out = reader.join().unwrap_or_default();
    (status.code(), format!("{out}{err}"))
}

/// How many processes `ctr tasks ps` lists in container `ctr`.
fn container_pids(h: &Harness, ctr: &str) -> usize {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(&h.socket)
        .args(["-n", "k8s.io", "tasks", "ps", ctr])
        .output()
        .expect("running ctr tasks ps");
    assert!(
        out.status.success(),
        "ctr tasks ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A header line, then one line per process.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// The pod's shim: the `containerd-shim-nanovisor-v1` process naming the pod.
fn shim_pid(h: &Harness, pod: &str) -> u32 {
    let shims: Vec<u32> = h
        .processes_naming(&[pod])
        .iter()
        .filter(|p| p.contains("containerd-shim-nanovisor-v1"))
        .filter_map(|p| p.split_once(':').and_then(|(pid, _)| pid.parse().ok()))
        .collect();
    match shims[..] {
        [pid] => pid,
        _ => panic!("want one shim naming pod {pod}, found {shims:?}"),
    }
}

/// The shim's terminal relay threads (`tty-in`, `tty-out`).
fn relay_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|t| read(&t.path().join("comm")).starts_with("tty-"))
        .count()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}
