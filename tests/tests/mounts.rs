//! OCI mounts end to end: `runsc run` on a bundle whose root is an empty directory and
//! whose programs come from read-only binds of the host's /bin, /usr, /lib and /lib64,
//! with a writable bind of a host directory at /data (writes reach the host) and a tmpfs
//! at /scratch (writes stay in the sandbox). A bind into a read-only mount must fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use nanovisor_tests::{run, runsc};

/// A scratch directory (state root, bundle, volume), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        // Short: the control socket's path under it must fit in sun_path.
        let dir = PathBuf::from(format!("/tmp/nv-mnt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A read-only bind of a host path at the same place, if the host has it.
fn host_ro(path: &str) -> Option<serde_json::Value> {
    Path::new(path).exists().then(|| {
        serde_json::json!({
            "destination": path, "type": "bind", "source": path,
            "options": ["rbind", "ro", "nosuid", "nodev"]
        })
    })
}

#[test]
fn binds_and_tmpfs_in_a_container() {
    let s = Scratch::new("run");
    let bundle = s.0.join("bundle");
    let volume = s.0.join("volume");
    std::fs::create_dir_all(bundle.join("rootfs")).expect("rootfs");
    std::fs::create_dir_all(&volume).expect("volume");
    std::fs::write(volume.join("hello"), b"from the host\n").expect("a file in the volume");

    let script = "ls /data; echo written > /data/out; echo x > /scratch/f && cat /scratch/f; \
                  echo no > /usr/x 2>&1 || echo ro-ok";
    let mut mounts: Vec<serde_json::Value> = ["/bin", "/usr", "/lib", "/lib64"]
        .into_iter()
        .filter_map(host_ro)
        .collect();
    mounts.push(serde_json::json!({
        "destination": "/data", "type": "bind", "source": volume,
        "options": ["rbind", "rw"]
    }));
    mounts.push(serde_json::json!({
        "destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "mode=1777", "size=16m"]
    }));
    // What runc's default spec also carries: the sandbox's own /proc and /dev stay.
    mounts.push(serde_json::json!({ "destination": "/proc", "type": "proc", "source": "proc" }));
    mounts.push(serde_json::json!({
        "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]
    }));
    mounts.push(serde_json::json!({ "destination": "/sys", "type": "sysfs", "source": "sysfs" }));
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "root": { "path": "rootfs", "readonly": true },
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["/bin/sh", "-c", script],
            "cwd": "/",
            "env": ["PATH=/usr/bin:/bin"]
        },
        "hostname": "mounts",
        "mounts": mounts,
        "linux": { "namespaces": [{ "type": "pid" }, { "type": "mount" }] }
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).expect("config.json");

    let mut cmd = Command::new(runsc());
    cmd.arg("--root")
        .arg(s.0.join("state"))
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(format!("mounts-{}", std::process::id()));
    let out = run(cmd);
    let stdout = out.stdout_str();
    assert_eq!(
        (out.status, stdout.as_str()),
        (0, "hello\nx\nro-ok\n"),
        "runsc run: stderr:\n{}",
        out.stderr_str()
    );
    assert!(
        out.stderr_str().contains("Read-only file system"),
        "the shell reports EROFS for /usr/x; stderr:\n{}",
        out.stderr_str()
    );
    assert_eq!(
        std::fs::read_to_string(volume.join("out")).ok().as_deref(),
        Some("written\n"),
        "the write to /data reaches the host"
    );
    assert!(
        !Path::new("/usr/x").exists(),
        "a read-only bind took a write"
    );
    assert!(!bundle.join("rootfs/scratch").exists() && !bundle.join("rootfs/data").exists());
}

/// A file of a volume mapped MAP_SHARED by two processes in a container: the same
/// output as natively on a host directory, and the stores reach the host file.
#[test]
fn shared_mappings_of_a_volume_file() {
    let s = Scratch::new("map");
    let bundle = s.0.join("bundle");
    let volume = s.0.join("volume");
    let native_dir = s.0.join("native");
    for d in [bundle.join("rootfs"), volume.clone(), native_dir.clone()] {
        std::fs::create_dir_all(d).expect("a scratch directory");
    }
    let prog = nanovisor_tests::guest_bin("volume_map");
    let native = nanovisor_tests::run_native(&prog, &[&native_dir.to_string_lossy()]);
    assert_eq!(native.status, 0, "{}", native.stderr_str());

    let guest_dir = prog.parent().expect("the guest programs' directory");
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "root": { "path": "rootfs", "readonly": true },
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["/guest/volume_map", "/data"],
            "cwd": "/",
            "env": ["PATH=/usr/bin:/bin"]
        },
        "mounts": [
            { "destination": "/guest", "type": "bind", "source": guest_dir,
              "options": ["rbind", "ro"] },
            { "destination": "/data", "type": "bind", "source": volume,
              "options": ["rbind", "rw"] },
            { "destination": "/proc", "type": "proc", "source": "proc" }
        ],
        "linux": { "namespaces": [{ "type": "pid" }, { "type": "mount" }] }
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).expect("config.json");
    let mut cmd = Command::new(runsc());
    cmd.arg("--root")
        .arg(s.0.join("state"))
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(format!("map-{}", std::process::id()));
    let sandboxed = run(cmd);
    nanovisor_tests::assert_same_outcome("volume_map", &native, &sandboxed);
    let host = std::fs::read(volume.join("mapped")).expect("the volume's file");
    let want = std::fs::read(native_dir.join("mapped")).expect("the native file");
    assert_eq!(
        host, want,
        "the host file has what was stored through the maps"
    );
}
