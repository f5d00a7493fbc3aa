//! A second real client of our CLI: PyPI `gvisor` (gVisor's Python bindings), which drives
//! whatever `runsc` is first on `$PATH` (`--root S --network=none run --bundle B --detach
//! ID`, `exec [--cwd D] [--env K=V]… ID CMD…`, `kill ID SIGKILL`, `delete --force ID`) on
//! a bundle of its own making: an empty root with the host's /bin, /usr, /lib, /lib64
//! bound read-only, `sleep infinity` as init, a tmpfs at /dev and proc at /proc.
//!
//! With our binary first on PATH as `runsc`, the bindings run a container and exec into
//! it (`echo`, a shell with --env and --cwd, Node), see a failing exec as an error, use
//! their own bind (written through to the host) and tmpfs mounts, and clean up.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nanovisor_tests::runsc;

/// What to run when the bindings are missing.
const INSTALL: &str = "python3 -m pip install gvisor";

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An interpreter that can `import gvisor`: `$NANOVISOR_PYTHON`, else `python3` on the
/// caller's PATH (resolved to the real executable: a pyenv shim needs the caller's PATH,
/// and the script runs with a PATH of our choosing), else `/usr/bin/python3`.
fn python_with_gvisor() -> Result<PathBuf, String> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("NANOVISOR_PYTHON") {
        candidates.push(PathBuf::from(p));
    }
    if let Ok(out) = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
    {
        let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !exe.is_empty() {
            candidates.push(PathBuf::from(exe));
        }
    }
    candidates.push(PathBuf::from("/usr/bin/python3"));
    candidates.dedup();
    let mut tried = Vec::new();
    for py in candidates {
        let ok = Command::new(&py)
            .args(["-c", "import gvisor; gvisor.Sandbox; gvisor.Mount"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(py);
        }
        tried.push(py.display().to_string());
    }
    Err(format!(
        "the PyPI package `gvisor` (gVisor's Python bindings) is not installed for any of {}: \
         run `{INSTALL}` (CI: add it to .ci/run), or point NANOVISOR_PYTHON at an interpreter \
         that has it",
        tried.join(", ")
    ))
}

const SCRIPT: &str = r#"
import json, os, shutil, sys
import gvisor

rt, vol = sys.argv[1], sys.argv[2]
res = {"runsc": shutil.which("runsc")}
mounts = [gvisor.Mount.bind(vol, "/data"), gvisor.Mount.tmpfs("/scratch")]
with gvisor.Sandbox(runtime_dir=rt, mounts=mounts) as sb:
    res["echo"] = sb.exec("echo", "hi", timeout=60)
    res["env_cwd"] = sb.exec("sh", "-c", "echo $FOO; pwd", env={"FOO": "bar"}, cwd="/usr", timeout=60)
    res["mounts"] = sb.exec("sh", "-c", "echo vol > /data/f; echo t > /scratch/t; cat /scratch/t", timeout=60)
    if os.path.exists("/usr/bin/node"):
        res["node"] = sb.exec("node", "-e", "console.log(1)", timeout=60)
    try:
        sb.exec("sh", "-c", "exit 3", timeout=60)
        res["failing"] = "no error"
    except gvisor.Error:
        res["failing"] = "error"
res["left"] = sorted(os.listdir(os.path.join(rt, "state")))
print(json.dumps(res))
"#;

/// Run `cmd`, killing it after `limit`.
fn output_within(mut cmd: Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting python");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("waiting for python").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collecting python");
            panic!(
                "the bindings did not finish within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collecting python")
}

#[test]
fn pypi_gvisor_bindings_run_and_exec() {
    let python = python_with_gvisor().unwrap_or_else(|e| panic!("{e}"));
    let s = Scratch(PathBuf::from(format!(
        "/tmp/nv-gvpy-{}",
        std::process::id()
    )));
    let _ = std::fs::remove_dir_all(&s.0);
    let (bin, rt, vol) = (s.0.join("bin"), s.0.join("rt"), s.0.join("vol"));
    for d in [&bin, &rt, &vol] {
        std::fs::create_dir_all(d).expect("scratch dirs");
    }
    let ours = runsc().canonicalize().expect("our runsc");
    std::os::unix::fs::symlink(&ours, bin.join("runsc")).expect("runsc symlink");
    let script = s.0.join("drive.py");
    std::fs::write(&script, SCRIPT).expect("writing the script");

    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg(&rt)
        .arg(&vol)
        .current_dir(&s.0)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("HOME", &s.0)
        .env("LANG", "C.UTF-8");
    let out = output_within(cmd, Duration::from_secs(240));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}: {}\n{stderr}",
        python.display(),
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let res: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the script's report {stdout:?}: {e}; stderr:\n{stderr}"));
    let pair = |k: &str| res[k].clone();
    assert_eq!(
        res["runsc"].as_str().map(Path::new),
        Some(bin.join("runsc").as_path()),
        "our runsc is first on PATH"
    );
    assert_eq!(pair("echo"), serde_json::json!(["hi\n", ""]));
    assert_eq!(pair("env_cwd"), serde_json::json!(["bar\n/usr\n", ""]));
    assert_eq!(pair("mounts"), serde_json::json!(["t\n", ""]));
    if Path::new("/usr/bin/node").exists() {
        assert_eq!(pair("node"), serde_json::json!(["1\n", ""]));
    }
    assert_eq!(
        pair("failing"),
        serde_json::json!("error"),
        "a failing exec raises"
    );
    assert_eq!(
        std::fs::read_to_string(vol.join("f")).ok().as_deref(),
        Some("vol\n"),
        "the bindings' bind mount is writable through to the host"
    );
    assert_eq!(
        pair("left"),
        serde_json::json!([]),
        "kill + delete --force leave no container state"
    );
}
