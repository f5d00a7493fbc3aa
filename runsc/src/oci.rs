//! The OCI bundle: reading and checking `config.json`, and turning its process into the
//! control API's [`ProcessSpec`] (for the init, which `runsc boot` starts, and for
//! `runsc exec --process`).

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use nanovisor_proto::control::{ProcessSpec, Rlimit};
use oci_spec::runtime::{PosixRlimitType, Process, Spec};
use oci_spec::OciSpecError;

/// The oldest and newest runtime spec versions we read.
pub const OCI_VERSION_MIN: &str = "1.0.0";
pub const OCI_VERSION_MAX: &str = "1.1.0";

/// Reads `BUNDLE/config.json`. Errors name the file and what is wrong with it.
pub fn load_spec(bundle: &Path) -> Result<Spec, String> {
    let path = bundle.join("config.json");
    Spec::load(&path).map_err(|e| match e {
        OciSpecError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "config.json: no such file".to_string()
        }
        OciSpecError::Io(e) => format!("config.json: {e}"),
        OciSpecError::SerDe(e) => format!("config.json: {e}"),
        e => format!("config.json: {e}"),
    })
}

/// Checks what `create` needs of a spec (runc's `validateProcessSpec` and more) and
/// returns the absolute root file system.
pub fn validate(spec: &Spec, bundle: &Path) -> Result<PathBuf, String> {
    check_version(spec.version())?;
    let process = spec
        .process()
        .as_ref()
        .ok_or("config.json: missing field `process`")?;
    check_process(process).map_err(|e| format!("config.json: {e}"))?;
    let root = spec
        .root()
        .as_ref()
        .ok_or("config.json: missing field `root`")?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => Ok(rootfs),
        Ok(_) => Err(format!(
            "config.json: root.path {}: not a directory",
            rootfs.display()
        )),
        Err(e) => Err(format!("config.json: root.path {}: {e}", rootfs.display())),
    }
}

/// `ociVersion` must be a 1.x version (runc reads 1.0.0 through 1.2.x the same way).
fn check_version(version: &str) -> Result<(), String> {
    if version.is_empty() {
        return Err("config.json: ociVersion is empty".to_string());
    }
    let major = version.split('.').next().unwrap_or_default();
    if major != "1" {
        return Err(format!(
            "config.json: unsupported ociVersion {version:?} (this runtime reads {OCI_VERSION_MIN} to {OCI_VERSION_MAX})"
        ));
    }
    Ok(())
}

/// What a process needs to be started (the init's, or one for `exec --process`).
pub fn check_process(process: &Process) -> Result<(), String> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err("process.args must not be empty".to_string());
    }
    let cwd = process.cwd();
    if cwd.as_os_str().is_empty() {
        return Err("process.cwd must not be empty".to_string());
    }
    if !cwd.is_absolute() {
        return Err(format!(
            "process.cwd {:?} must be an absolute path",
            cwd.display()
        ));
    }
    Ok(())
}

/// The `RLIMIT_*` number of an rlimit type.
pub fn rlimit_resource(typ: PosixRlimitType) -> u32 {
    use PosixRlimitType::*;
    match typ {
        RlimitCpu => 0,
        RlimitFsize => 1,
        RlimitData => 2,
        RlimitStack => 3,
        RlimitCore => 4,
        RlimitRss => 5,
        RlimitNproc => 6,
        RlimitNofile => 7,
        RlimitMemlock => 8,
        RlimitAs => 9,
        RlimitLocks => 10,
        RlimitSigpending => 11,
        RlimitMsgqueue => 12,
        RlimitNice => 13,
        RlimitRtprio => 14,
        RlimitRttime => 15,
    }
}

/// The control API's process spec for an OCI process.
pub fn process_spec(process: &Process) -> ProcessSpec {
    let bytes = |v: &Option<Vec<String>>| -> Vec<Vec<u8>> {
        v.iter().flatten().map(|s| s.as_bytes().to_vec()).collect()
    };
    let user = process.user();
    ProcessSpec {
        args: bytes(process.args()),
        env: bytes(process.env()),
        cwd: process.cwd().as_os_str().as_bytes().to_vec(),
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        terminal: process.terminal().unwrap_or(false),
        rlimits: process
            .rlimits()
            .iter()
            .flatten()
            .map(|r| Rlimit {
                resource: rlimit_resource(r.typ()),
                soft: r.soft(),
                hard: r.hard(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        PosixRlimitBuilder, ProcessBuilder, RootBuilder, SpecBuilder, UserBuilder,
    };

    fn process(args: &[&str], cwd: &str) -> Process {
        ProcessBuilder::default()
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .env(vec!["PATH=/bin".to_string()])
            .cwd(cwd)
            .terminal(true)
            .user(
                UserBuilder::default()
                    .uid(1000u32)
                    .gid(100u32)
                    .additional_gids(vec![10u32, 20])
                    .build()
                    .expect("valid user"),
            )
            .rlimits(vec![PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(1024u64)
                .hard(4096u64)
                .build()
                .expect("valid rlimit")])
            .build()
            .expect("valid process")
    }

    #[test]
    fn converts_a_process() {
        let spec = process_spec(&process(&["/bin/echo", "hi"], "/tmp"));
        assert_eq!(spec.args, [b"/bin/echo".to_vec(), b"hi".to_vec()]);
        assert_eq!(spec.env, [b"PATH=/bin".to_vec()]);
        assert_eq!(spec.cwd, b"/tmp");
        assert_eq!((spec.uid, spec.gid), (1000, 100));
        assert_eq!(spec.additional_gids, [10, 20]);
        assert!(spec.terminal);
        assert_eq!(spec.rlimits.len(), 1);
        assert_eq!(
            (
                spec.rlimits[0].resource,
                spec.rlimits[0].soft,
                spec.rlimits[0].hard
            ),
            (libc::RLIMIT_NOFILE, 1024, 4096)
        );
    }

    #[test]
    fn rlimit_numbers_match_libc() {
        use PosixRlimitType::*;
        for (t, n) in [
            (RlimitCpu, libc::RLIMIT_CPU),
            (RlimitStack, libc::RLIMIT_STACK),
            (RlimitNproc, libc::RLIMIT_NPROC),
            (RlimitAs, libc::RLIMIT_AS),
            (RlimitRttime, libc::RLIMIT_RTTIME),
        ] {
            assert_eq!(rlimit_resource(t), n);
        }
    }

    #[test]
    fn checks_processes() {
        assert!(check_process(&process(&["sh"], "/")).is_ok());
        assert_eq!(
            check_process(&process(&[], "/")).expect_err("refused"),
            "process.args must not be empty"
        );
        assert!(check_process(&process(&["sh"], "rel"))
            .expect_err("refused")
            .contains("absolute"));
    }

    #[test]
    fn validates_specs() {
        let dir = std::env::temp_dir().join(format!("runsc-oci-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("rootfs")).expect("file system");
        let spec = |version: &str, root: &str| {
            SpecBuilder::default()
                .version(version)
                .process(process(&["sh"], "/"))
                .root(
                    RootBuilder::default()
                        .path(root)
                        .build()
                        .expect("valid root"),
                )
                .build()
                .expect("valid spec")
        };
        assert_eq!(
            validate(&spec("1.0.2", "rootfs"), &dir).expect("valid"),
            dir.join("rootfs")
        );
        let e = validate(&spec("1.0.2", "missing"), &dir).expect_err("refused");
        assert!(e.starts_with("config.json: root.path "), "{e}");
        let e = validate(&spec("2.0.0", "rootfs"), &dir).expect_err("refused");
        assert!(e.contains("unsupported ociVersion \"2.0.0\""), "{e}");
        let e = validate(&spec("", "rootfs"), &dir).expect_err("refused");
        assert!(e.contains("ociVersion is empty"), "{e}");
        std::fs::write(dir.join("config.json"), "{\"ociVersion\": 1}").expect("file system");
        let e = load_spec(&dir).expect_err("refused");
        assert!(e.starts_with("config.json: invalid type: integer"), "{e}");
        let e = load_spec(&dir.join("nowhere")).expect_err("refused");
        assert_eq!(e, "config.json: no such file");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
