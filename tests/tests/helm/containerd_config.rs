//! The installer's containerd config edit (`configure-containerd.sh`).

use super::*;

/// The handler's table as containerd reads it, in Python's `json.dumps(sort_keys=True)`.
pub(super) const RUNTIME_TABLE: &str =
    "{\"options\": {\"ConfigPath\": \"/etc/nanovisor/shim.toml\"}, \
     \"pod_annotations\": [\"dev.nanovisor.*\"], \"runtime_type\": \"io.containerd.nanovisor.v1\"}";

pub(super) const V2_CONFIG: &str = r#"version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.9"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = true
"#;

/// containerd 2.x's own style: single-quoted keys, an imports glob.
const V3_CONFIG: &str = "version = 3\n\
    imports = ['/etc/containerd/conf.d/*.toml']\n\
    root = '/var/lib/containerd'\n\
    \n\
    [plugins.'io.containerd.cri.v1.runtime'.containerd]\n  default_runtime_name = 'runc'\n\
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n  SystemdCgroup = true\n";

pub(super) const V2_PLUGIN: &str = "io.containerd.grpc.v1.cri";
const V3_PLUGIN: &str = "io.containerd.cri.v1.runtime";

fn configure_script() -> PathBuf {
    workspace_root().join("deploy/installer/configure-containerd.sh")
}

/// Runs configure-containerd.sh with `args`; returns (success, stdout, stderr).
fn configure(args: &[&str]) -> (bool, String, String) {
    let out = output(Command::new("sh").arg(configure_script()).args(args));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A Python with tomllib (3.11+): `python3`, else the 3.12 the chart test uses.
fn python_with_tomllib() -> PathBuf {
    let python3 = PathBuf::from("python3");
    let ok = Command::new(&python3)
        .args(["-c", "import tomllib"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        python3
    } else {
        python312()
    }
}

/// The handler's table in a TOML file, under `plugins.PLUGIN.containerd.runtimes`, plus the
/// runc options next to it (None when the file has no runc), both as sorted JSON.
pub(super) fn runtime_tables(file: &Path, plugin: &str) -> (String, String) {
    let out = check(
        Command::new(python_with_tomllib())
            .args([
                "-c",
                "import json, sys, tomllib\n\
                 d = tomllib.load(open(sys.argv[1], 'rb'))\n\
                 rt = d['plugins'][sys.argv[2]]['containerd']['runtimes']\n\
                 print(json.dumps(rt['nanovisor'], sort_keys=True))\n\
                 print(json.dumps(rt.get('runc', {}).get('options'), sort_keys=True))",
            ])
            .arg(file)
            .arg(plugin),
        &format!("parsing {} as TOML with runtime nanovisor", file.display()),
    );
    let mut lines = out.lines().map(str::to_string);
    (
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
    )
}

/// What containerd 1.6 (Debian's, as the CRI test uses) makes of a version 2 config: its
/// merged view must hold the handler with its options.
fn containerd_reads_handler(config: &Path) {
    let out = output(
        Command::new("containerd")
            .arg("--config")
            .arg(config)
            .args(["config", "dump"]),
    );
    let dump = String::from_utf8_lossy(&out.stdout);
    let section = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nanovisor]";
    assert!(
        out.status.success()
            && dump.contains(section)
            && dump.contains("runtime_type = \"io.containerd.nanovisor.v1\"")
            && dump.contains("pod_annotations = [\"dev.nanovisor.*\"]")
            && dump.contains("ConfigPath = \"/etc/nanovisor/shim.toml\""),
        "containerd does not read the handler from {} (apt-get install containerd if it is \
         missing):\n{}\n{dump}",
        config.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Configures `config` (under `root`, if any) twice: the first run changes it, the second
/// leaves every byte alone.
#[track_caller]
fn configure_twice(args: &[&str], files: &[&Path]) {
    let (ok, stdout, stderr) = configure(args);
    assert!(
        ok && stdout == "changed\n",
        "first run of {args:?}: {stdout}{stderr}"
    );
    let before: Vec<String> = files.iter().map(|f| read(f)).collect();
    let (ok, stdout, stderr) = configure(args);
    assert!(
        ok && stdout == "unchanged\n",
        "second run of {args:?}: {stdout}{stderr}"
    );
    let after: Vec<String> = files.iter().map(|f| read(f)).collect();
    assert_eq!(before, after, "a second run of {args:?} changed a file");
}

#[test]
fn containerd_config_edit_is_idempotent_and_reversible() {
    let scratch = Scratch::new("containerd-config");
    let dir = &scratch.0;
    let systemd_cgroup = "{\"SystemdCgroup\": true}";

    // Version 2 (containerd 1.6/1.7): a marked block at the end of config.toml.
    let v2 = dir.join("v2.toml");
    write(&v2, V2_CONFIG);
    let v2_arg = v2.to_str().expect("UTF-8 path");
    configure_twice(&["--config", v2_arg], &[&v2]);
    assert_eq!(
        runtime_tables(&v2, V2_PLUGIN),
        (RUNTIME_TABLE.into(), systemd_cgroup.into())
    );
    containerd_reads_handler(&v2);
    assert!(read(&v2).starts_with(V2_CONFIG));
    assert_eq!(read(&dir.join("v2.toml.nanovisor-backup")), V2_CONFIG);
    let (ok, stdout, _) = configure(&["--config", v2_arg, "--remove"]);
    assert!(ok && stdout == "changed\n");
    assert_eq!(
        read(&v2),
        V2_CONFIG,
        "--remove must give back the original file"
    );
    assert_eq!(
        configure(&["--config", v2_arg, "--remove"]).1,
        "unchanged\n"
    );

    // Version 3 (containerd 2.x) whose imports directory does not exist: a block as well.
    let host = dir.join("host");
    let v3 = host.join("etc/containerd/config.toml");
    write(&v3, V3_CONFIG);
    let root_args = [
        "--root",
        host.to_str().expect("UTF-8 path"),
        "--config",
        "/etc/containerd/config.toml",
    ];
    configure_twice(&root_args, &[&v3]);
    assert_eq!(
        runtime_tables(&v3, V3_PLUGIN),
        (RUNTIME_TABLE.into(), systemd_cgroup.into())
    );

    // Once the directory exists the handler moves to a drop-in, and config.toml is the
    // original again: containerd 2.x merges drop-ins key by key.
    let conf_d = host.join("etc/containerd/conf.d");
    std::fs::create_dir_all(&conf_d).expect("mkdir conf.d");
    let dropin = conf_d.join("nanovisor-runtime.toml");
    configure_twice(&root_args, &[&v3, &dropin]);
    assert_eq!(read(&v3), V3_CONFIG);
    assert_eq!(runtime_tables(&dropin, V3_PLUGIN).0, RUNTIME_TABLE);
    assert!(
        read(&dropin).contains("version = 3\n"),
        "a drop-in needs its own version"
    );
    let mut remove = root_args.to_vec();
    remove.push("--remove");
    assert_eq!(configure(&remove).1, "changed\n");
    assert!(!dropin.exists() && read(&v3) == V3_CONFIG);

    // A file with nothing but comments (Debian's stock config) or none at all: the block
    // brings its own version, from --default-version.
    let commented = dir.join("commented.toml");
    let comments = "#root = \"/var/lib/containerd\"\n#state = \"/run/containerd\"\n";
    write(&commented, comments);
    let commented_arg = commented.to_str().expect("UTF-8 path");
    let (ok, _, stderr) = configure(&["--config", commented_arg]);
    assert!(!ok && stderr.contains("--default-version"), "{stderr}");
    configure_twice(
        &["--config", commented_arg, "--default-version", "2"],
        &[&commented],
    );
    // Later runs find the version in the block itself.
    assert_eq!(configure(&["--config", commented_arg]).1, "unchanged\n");
    assert_eq!(runtime_tables(&commented, V2_PLUGIN).0, RUNTIME_TABLE);
    containerd_reads_handler(&commented);
    configure(&["--config", commented_arg, "--remove"]);
    assert_eq!(read(&commented), comments);
    let absent = dir.join("absent/config.toml");
    std::fs::create_dir_all(dir.join("absent")).expect("mkdir");
    let absent_arg = absent.to_str().expect("UTF-8 path");
    configure_twice(
        &["--config", absent_arg, "--default-version", "3"],
        &[&absent],
    );
    assert_eq!(runtime_tables(&absent, V3_PLUGIN).0, RUNTIME_TABLE);

    // A last line without its newline gets one before the block.
    let unterminated = dir.join("unterminated.toml");
    write(&unterminated, V2_CONFIG.trim_end());
    configure_twice(
        &["--config", unterminated.to_str().expect("UTF-8 path")],
        &[&unterminated],
    );
    assert_eq!(
        runtime_tables(&unterminated, V2_PLUGIN),
        (RUNTIME_TABLE.into(), systemd_cgroup.into())
    );

    // What it refuses, leaving the file alone: a version 1 config (no `version`), and a
    // handler table someone wrote by hand.
    let v1 = dir.join("v1.toml");
    write(&v1, "root = \"/var/lib/containerd\"\n");
    let (ok, _, stderr) = configure(&["--config", v1.to_str().expect("UTF-8 path")]);
    assert!(!ok && stderr.contains("no top-level 'version'"), "{stderr}");
    assert_eq!(read(&v1), "root = \"/var/lib/containerd\"\n");
    let by_hand = dir.join("by-hand.toml");
    let hand = format!(
        "{V2_CONFIG}[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nanovisor]\n"
    );
    write(&by_hand, &hand);
    let (ok, _, stderr) = configure(&["--config", by_hand.to_str().expect("UTF-8 path")]);
    assert!(
        !ok && stderr.contains("outside the installer's block"),
        "{stderr}"
    );
    assert_eq!(read(&by_hand), hand);
    // A block whose END line was deleted: where it ends is anyone's guess.
    let damaged = dir.join("damaged.toml");
    let (ok, _, stderr) = configure(&[
        "--config",
        damaged.to_str().expect("UTF-8 path"),
        "--default-version",
        "2",
    ]);
    assert!(ok, "{stderr}");
    let cut: String = read(&damaged)
        .lines()
        .filter(|l| !l.starts_with("# END"))
        .map(|l| format!("{l}\n"))
        .collect();
    write(&damaged, &cut);
    let (ok, _, stderr) = configure(&["--config", damaged.to_str().expect("UTF-8 path")]);
    assert!(!ok && stderr.contains("is damaged"), "{stderr}");
    assert_eq!(read(&damaged), cut);
}
