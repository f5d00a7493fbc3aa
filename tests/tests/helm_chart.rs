//! The Helm chart `deploy/helm/nanovisor` and its node installer (`deploy/installer/`).
//!
//! - The chart passes Helm's own lint (PyPI `helm-sdkpy`, and `helm lint --strict` with
//!   each `ci/` values file through PyPI `helm-python-sdk`), packages, and renders (with
//!   the default values and each `ci/` values file) to manifests that PyPI
//!   `kubernetes-validate --strict` accepts for Kubernetes 1.30 and 1.37. The rendered
//!   objects say what the shim and runsc expect: RuntimeClass handler, overhead and node
//!   selector matching the label the installer sets, shim.toml naming the ACL file only
//!   when there is a default policy, an ACL policy our own parser (`runsc acl`) accepts.
//!   The Python tools live in a venv under the target directory, made on first use.
//! - `configure-containerd.sh` edits version 2 and 3 configs (and drop-ins) idempotently,
//!   the result parses as TOML with the handler's table (and containerd 1.6 itself reads
//!   the version 2 results), and `--remove` restores the file byte for byte.
//! - `install.sh` installs, reinstalls (no restart), prunes and uninstalls against a fake
//!   host: a directory tree, with stand-ins for nsenter, containerd, curl and runsc.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nanovisor_tests::{runsc, target_dir, workspace_root};

#[path = "helm/containerd_config.rs"]
mod containerd_config;
#[path = "helm/installer.rs"]
mod installer;
#[path = "helm/rendering.rs"]
mod rendering;

use rendering::*;

/// The PyPI packages the chart test runs, pinned (checked on Python 3.12.1).
const PYTHON_PACKAGES: [&str; 3] = [
    // Helm's lint and package (Helm v4's Go SDK).
    "helm-sdkpy==0.1.32",
    // `helm template` and `helm lint --strict -f` offline (Helm v4.2.3's Go SDK).
    "helm-python-sdk==0.2.2",
    // Kubernetes' OpenAPI schemas, offline, 1.30 through 1.37.
    "kubernetes-validate==1.37.0",
];

/// The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the
/// pinned kubernetes-validate knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// The values files the chart is rendered with besides its defaults.
const CI_VALUES: [&str; 3] = ["acl-and-images", "acl-text", "uninstall"];

/// A scratch directory under the target directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = target_dir().join(format!("{name}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn write_script(path: &Path, text: &str) {
    write(path, text);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Runs `cmd` to completion, panicking if it cannot start.
fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Runs `cmd`, which must succeed; returns its stdout.
#[track_caller]
fn check(cmd: &mut Command, what: &str) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{what} failed ({}): {cmd:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------
// The Python tools.

/// A Python >= 3.12 (helm-sdkpy needs it): pyenv's 3.12+, else python3.12 / python3.13
/// on PATH.
fn python312() -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        let versions = PathBuf::from(home).join(".pyenv/versions");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&versions)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("3.12") || n.starts_with("3.13"))
            })
            .map(|p| p.join("bin/python3"))
            .collect();
        found.sort();
        candidates.extend(found);
    }
    candidates.extend(["python3.12", "python3.13"].map(PathBuf::from));
    for python in candidates {
        let ok = Command::new(&python)
            .args(["-c", "import sys; assert sys.version_info >= (3, 12)"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return python;
        }
    }
    panic!(
        "the chart test needs Python >= 3.12 (helm-sdkpy requires it): none in \
         ~/.pyenv/versions/3.12*, 3.13* or as python3.12 / python3.13 on PATH \
         (install one, e.g. `pyenv install 3.12`)"
    );
}

/// `target/helm-venv`, with PYTHON_PACKAGES installed; made once, remade when the pins
/// change (the pins are recorded inside it).
fn venv() -> PathBuf {
    let dir = target_dir().join("helm-venv");
    let stamp = dir.join("nanovisor-requirements.txt");
    let wanted = PYTHON_PACKAGES.join("\n") + "\n";
    if dir.join("bin/python").is_file()
        && std::fs::read_to_string(&stamp).ok() == Some(wanted.clone())
    {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let python = python312();
    check(
        Command::new(&python).arg("-m").arg("venv").arg(&dir),
        &format!("creating a venv with {}", python.display()),
    );
    let out = output(
        Command::new(dir.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
            ])
            .args(PYTHON_PACKAGES),
    );
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        panic!(
            "pip install {} failed (is PyPI reachable?); the chart test cannot run without \
             them:\n{}",
            PYTHON_PACKAGES.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Written last: a venv without it is half made and is made again.
    write(&stamp, &wanted);
    dir
}

/// `deploy/helm/check.py ARGS` in the venv, with Helm's home directories inside it.
fn check_py(venv: &Path, args: &[&str]) -> Command {
    let helm_home = venv.join("helm-home");
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.arg(workspace_root().join("deploy/helm/check.py"))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("HELM_CACHE_HOME", helm_home.join("cache"))
        .env("HELM_CONFIG_HOME", helm_home.join("config"))
        .env("HELM_DATA_HOME", helm_home.join("data"));
    cmd
}

// ---------------------------------------------------------------------------------------
// The chart.

#[test]
fn chart_lints_renders_and_validates() {
    let venv = venv();
    let chart = workspace_root().join("deploy/helm/nanovisor");
    let chart_arg = chart.to_str().expect("UTF-8 path");
    let scratch = Scratch::new("helm-chart");

    // Helm's lint: no errors and no warnings, with the defaults and every ci/ values file.
    let mut lint = check_py(&venv, &["lint", chart_arg, "--kube-version", "v1.30.0"]);
    for name in CI_VALUES {
        lint.arg("--values")
            .arg(chart.join(format!("ci/{name}-values.yaml")));
    }
    check(&mut lint, "helm lint");

    let package_dir = scratch.0.join("package");
    let archive = check(
        &mut check_py(
            &venv,
            &[
                "package",
                chart_arg,
                package_dir.to_str().expect("UTF-8 path"),
            ],
        ),
        "helm package",
    );
    assert!(
        archive.trim().ends_with("nanovisor-0.1.0.tgz") && Path::new(archive.trim()).is_file(),
        "helm package made no nanovisor-0.1.0.tgz: {archive}"
    );

    let mut renders = vec![render(&venv, &chart, &scratch.0, "default")];
    renders.extend(CI_VALUES.map(|name| render(&venv, &chart, &scratch.0, name)));
    for r in &renders {
        validate(&venv, r);
        // The RuntimeClass sends pods exactly where the installer's label says the
        // runtime works, under the handler the installer registers.
        let (class, label_key, label_value) = match r.name {
            "acl-text" => ("nanovisor-debug", "example.test/nanovisor-debug", "yes"),
            _ => ("nanovisor", "nanovisor.dev/runtime", "ready"),
        };
        let ds = "nanovisor-installer";
        r.has(&format!("RuntimeClass/{class}: handler = \"{class}\""));
        r.has(&format!(
            "RuntimeClass/{class}: scheduling.nodeSelector[\"{label_key}\"] = \"{label_value}\""
        ));
        assert_eq!(
            r.installer_env(ds, "RUNTIME_HANDLER"),
            format!("\"{class}\""),
            "{}",
            r.name
        );
        assert_eq!(
            r.installer_env(ds, "NODE_LABEL_KEY"),
            format!("\"{label_key}\""),
            "{}",
            r.name
        );
        assert_eq!(
            r.installer_env(ds, "NODE_LABEL_VALUE"),
            format!("\"{label_value}\""),
            "{}",
            r.name
        );
        // The privileged installer is the init container; what keeps running holds nothing.
        r.has(&format!(
            "DaemonSet/{ds}: spec.template.spec.hostPID = true"
        ));
        r.has(&format!(
            "DaemonSet/{ds}: spec.template.spec.initContainers[0].securityContext.privileged = true"
        ));
        for line in [
            "privileged = false",
            "runAsNonRoot = true",
            "allowPrivilegeEscalation = false",
            "capabilities.drop[0] = \"ALL\"",
        ] {
            r.has(&format!(
                "DaemonSet/{ds}: spec.template.spec.containers[0].securityContext.{line}"
            ));
        }
        r.has(&format!(
            "DaemonSet/{ds}: spec.template.spec.automountServiceAccountToken = false"
        ));
    }

    let [default, images, text, uninstall] = &renders[..] else {
        unreachable!("four renderings")
    };
    let toml_common = "checkpoint_dir='/var/lib/nanovisor/checkpoints'\n";
    let with_acl = "default_acl_file='/etc/nanovisor/acl.yaml'\n";
    let paths = "root='/run/nanovisor'\nrunsc='/usr/local/bin/runsc'\n";

    // Defaults: 160Mi + 100m overhead, the metadata-blocking policy, no images.
    default.has("RuntimeClass/nanovisor: overhead.podFixed.memory = \"160Mi\"");
    default.has("RuntimeClass/nanovisor: overhead.podFixed.cpu = \"100m\"");
    default.has("DaemonSet/nanovisor-installer: spec.template.spec.initContainers[0].command[1] = \"install\"");
    default.has("ClusterRole/nanovisor-installer: rules[0].resources[0] = \"nodes\"");
    default.has("ClusterRole/nanovisor-installer: rules[0].verbs[0] = \"get\"");
    default.has("ClusterRole/nanovisor-installer: rules[0].verbs[1] = \"patch\"");
    default.has("ClusterRoleBinding/nanovisor-installer: subjects[0].name = \"nanovisor\"");
    assert_eq!(
        shim_toml(&venv, default),
        format!("{toml_common}debug=False\n{with_acl}{paths}")
    );
    assert!(read(&default.file("acl.yaml")).contains("169.254.169.254"));
    check_acl_policy(default, &scratch.0);
    assert_eq!(read(&default.file("checkpoint-images")), "");

    // A policy and two checkpoint images.
    images.has("RuntimeClass/nanovisor: overhead.podFixed.memory = \"192Mi\"");
    images.has("RuntimeClass/nanovisor: overhead.podFixed.cpu = \"250m\"");
    assert_eq!(
        shim_toml(&venv, images),
        format!("{toml_common}debug=False\n{with_acl}{paths}")
    );
    check_acl_policy(images, &scratch.0);
    assert!(read(&images.file("acl.yaml")).contains("api.example.test"));
    assert_eq!(
        read(&images.file("checkpoint-images")),
        "node-hello registry.example.test/apps/node-hello@sha256:\
         0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\
         ssr-warm mirror.internal:5000/apps/ssr:v3 plain-http\n"
    );

    // The policy as text, another handler and label, host network, no RBAC of its own.
    text.has("RuntimeClass/nanovisor-debug: scheduling.tolerations[0].key = \"sandboxed\"");
    text.has("DaemonSet/nanovisor-installer: spec.template.spec.hostNetwork = true");
    text.has(
        "DaemonSet/nanovisor-installer: spec.template.spec.dnsPolicy = \"ClusterFirstWithHostNet\"",
    );
    text.has(
        "DaemonSet/nanovisor-installer: spec.template.spec.serviceAccountName = \"node-installer\"",
    );
    for kind in ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"] {
        assert!(
            text.facts
                .lines()
                .all(|l| !l.starts_with(&format!("{kind}/"))),
            "acl-text: rbac.create / serviceAccount.create are false, yet a {kind} renders"
        );
    }
    assert_eq!(
        shim_toml(&venv, text),
        format!("{toml_common}debug=True\n{with_acl}{paths}")
    );
    check_acl_policy(text, &scratch.0);
    assert!(read(&text.file("acl.yaml")).contains("\"*.evil.test\""));

    // Uninstalling, without a default policy: shim.toml names no ACL file.
    uninstall.has(
        "DaemonSet/nanovisor-installer: spec.template.spec.initContainers[0].command[1] = \"uninstall\"",
    );
    assert_eq!(
        shim_toml(&venv, uninstall),
        format!("{toml_common}debug=False\n{paths}")
    );
    assert!(
        !uninstall.file("acl.yaml").exists(),
        "uninstall: acl.yaml rendered with no policy"
    );

    // NOTES tell how to use it.
    let notes = read(&default.dir.join("NOTES.txt"));
    for needle in [
        "runtimeClassName: nanovisor",
        "dev.nanovisor.acl:",
        "dev.nanovisor.acl-file:",
        "dev.nanovisor.checkpoint-image:",
        "kubectl get nodes -l nanovisor.dev/runtime=ready",
    ] {
        assert!(
            notes.contains(needle),
            "NOTES.txt lacks {needle:?}:\n{notes}"
        );
    }
    assert!(
        read(&images.dir.join("NOTES.txt")).contains("dev.nanovisor.checkpoint-image: node-hello")
    );
    assert!(read(&uninstall.dir.join("NOTES.txt")).contains("helm -n nanovisor-system uninstall"));
}
