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

/// One rendering of the chart: its directory (check.py's `render` output).
struct Rendered {
    name: &'static str,
    dir: PathBuf,
    facts: String,
}

impl Rendered {
    /// Asserts that the facts hold the line `OBJECT: PATH = JSON`.
    #[track_caller]
    fn has(&self, line: &str) {
        assert!(
            self.facts.lines().any(|l| l == line),
            "{}: the rendered chart lacks `{line}`; it has:\n{}",
            self.name,
            self.facts
        );
    }

    /// The value (as JSON) of env variable NAME of the installer's init container.
    #[track_caller]
    fn installer_env(&self, daemonset: &str, name: &str) -> String {
        let env = format!("DaemonSet/{daemonset}: spec.template.spec.initContainers[0].env[");
        let name_line = self
            .facts
            .lines()
            .find(|l| l.starts_with(&env) && l.ends_with(&format!("].name = \"{name}\"")))
            .unwrap_or_else(|| panic!("{}: the installer has no env {name}", self.name));
        let index = &name_line[env.len()..name_line.len() - format!("].name = \"{name}\"").len()];
        let value = format!("{env}{index}].value = ");
        self.facts
            .lines()
            .find_map(|l| l.strip_prefix(&value))
            .unwrap_or_else(|| panic!("{}: env {name} has no value", self.name))
            .to_string()
    }

    fn file(&self, key: &str) -> PathBuf {
        self.dir.join("files/nanovisor-config").join(key)
    }
}

fn render(venv: &Path, chart: &Path, out: &Path, name: &'static str) -> Rendered {
    let dir = out.join(name);
    let mut args = vec![
        chart.to_str().expect("UTF-8 path"),
        dir.to_str().expect("UTF-8 path"),
    ];
    let values = chart.join(format!("ci/{name}-values.yaml"));
    if name != "default" {
        args.extend(["--values", values.to_str().expect("UTF-8 path")]);
    }
    check(
        check_py(venv, &["render"]).args(&args),
        &format!("rendering the chart ({name})"),
    );
    let facts = read(&dir.join("facts.txt"));
    Rendered { name, dir, facts }
}

/// `kubernetes-validate --strict` on the rendered manifests, for each supported version.
fn validate(venv: &Path, rendered: &Rendered) {
    let manifests = rendered.dir.join("manifests.yaml");
    for version in KUBERNETES_VERSIONS {
        let out = output(
            Command::new(venv.join("bin/kubernetes-validate"))
                .args(["--strict", "--kubernetes-version", version])
                .arg(&manifests),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !text.contains("ERROR"),
            "{}: kubernetes-validate --strict --kubernetes-version {version} refuses the \
             rendered chart:\n{text}\n--- {} ---\n{}",
            rendered.name,
            manifests.display(),
            read(&manifests)
        );
    }
}

/// shim.toml as `key=repr(value)` lines, sorted, read by Python's TOML parser.
fn shim_toml(venv: &Path, rendered: &Rendered) -> String {
    check(
        Command::new(venv.join("bin/python"))
            .args([
                "-c",
                "import sys, tomllib\n\
                 d = tomllib.load(open(sys.argv[1], 'rb'))\n\
                 print('\\n'.join(f'{k}={v!r}' for k, v in sorted(d.items())))",
            ])
            .arg(rendered.file("shim.toml")),
        &format!("{}: parsing shim.toml", rendered.name),
    )
}

/// Our own policy parser must accept the rendered default policy: `runsc acl replace`
/// checks the file before it looks for the sandbox, so with no such sandbox a good policy
/// fails only for want of it.
fn check_acl_policy(rendered: &Rendered, scratch: &Path) {
    let out = output(
        Command::new(runsc())
            .arg("--root")
            .arg(scratch.join("no-sandboxes"))
            .args(["acl", "replace", "no-such-sandbox", "--file"])
            .arg(rendered.file("acl.yaml")),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"no-such-sandbox\" does not exist"),
        "{}: runsc refuses the rendered default ACL policy:\n{stderr}\n--- acl.yaml ---\n{}",
        rendered.name,
        read(&rendered.file("acl.yaml"))
    );
}

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

// ---------------------------------------------------------------------------------------
// The installer's containerd config edit.

/// The handler's table as containerd reads it, in Python's `json.dumps(sort_keys=True)`.
const RUNTIME_TABLE: &str = "{\"options\": {\"ConfigPath\": \"/etc/nanovisor/shim.toml\"}, \
     \"pod_annotations\": [\"dev.nanovisor.*\"], \"runtime_type\": \"io.containerd.nanovisor.v1\"}";

const V2_CONFIG: &str = r#"version = 2
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

const V2_PLUGIN: &str = "io.containerd.grpc.v1.cri";
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
fn runtime_tables(file: &Path, plugin: &str) -> (String, String) {
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

// ---------------------------------------------------------------------------------------
// The installer, on a fake host.

/// Stands in for `nsenter -t 1 … --`: logs each host command and fakes the host's
/// programs. `containerd config dump` prints the config file itself (enough for the
/// installer's check that the handler is in it), or fails when FAIL_DUMP is set.
const FAKE_HOST: &str = r#"#!/bin/sh
echo "$*" >>"$FAKE_LOG"
case "$1" in
    containerd)
        if [ "$2" = --version ]; then
            echo "containerd github.com/containerd/containerd v1.7.24 61f9fd88"
            exit 0
        fi
        if [ -n "${FAIL_DUMP:-}" ]; then
            echo "containerd: failed to load TOML" >&2
            exit 1
        fi
        cat "$HOST_ROOT$3" ;;
    systemctl) exit 0 ;;
    sh) exit 1 ;;   # `command -v ctr`: this host has no ctr
    test) exit 0 ;; # /dev/kvm and the socket are there
    *) echo "unexpected host command: $*" >&2; exit 1 ;;
esac
"#;

/// Stands in for curl: logs its arguments.
const FAKE_CURL: &str = "#!/bin/sh\necho \"curl $*\" >>\"$FAKE_LOG\"\n";

/// Stands in for runsc in the installer image: `image pull [--plain-http] REF DIR` makes
/// DIR with a manifest naming REF.
const FAKE_RUNSC: &str = r#"#!/bin/sh
echo "runsc $*" >>"$FAKE_LOG"
[ "$1 $2" = "image pull" ] || exit 2
shift 2
[ "$1" != --plain-http ] || shift
mkdir "$2" && echo "$1" >"$2/manifest.json"
"#;

struct FakeNode {
    dir: PathBuf,
}

impl FakeNode {
    fn host(&self, path: &str) -> PathBuf {
        self.dir.join("host").join(path.trim_start_matches('/'))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Runs `install.sh MODE` as the DaemonSet would, with the stand-ins; returns
    /// (success, stderr).
    fn run(&self, mode: &str, fail_dump: bool) -> (bool, String) {
        let d = &self.dir;
        let mut cmd = Command::new("sh");
        cmd.arg(workspace_root().join("deploy/installer/install.sh"))
            .arg(mode)
            .env("HOST_ROOT", d.join("host"))
            .env("HOST_EXEC", d.join("stubs/host"))
            .env("CURL", d.join("stubs/curl"))
            .env("PAYLOAD_DIR", d.join("payload"))
            .env("CONFIG_SOURCE", d.join("config"))
            .env("SERVICE_ACCOUNT_DIR", d.join("sa"))
            .env("FAKE_LOG", d.join("log"))
            .env("TMPDIR", d.join("tmp"))
            .env("NODE_NAME", "node-1")
            .env("KUBERNETES_SERVICE_HOST", "fd00::1")
            .env("KUBERNETES_SERVICE_PORT", "443");
        if fail_dump {
            cmd.env("FAIL_DUMP", "1");
        }
        let out = output(&mut cmd);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[test]
fn installer_installs_and_uninstalls_on_a_fake_host() {
    let scratch = Scratch::new("installer");
    let node = FakeNode {
        dir: scratch.0.clone(),
    };
    let d = &node.dir;
    write_script(&d.join("stubs/host"), FAKE_HOST);
    write_script(&d.join("stubs/curl"), FAKE_CURL);
    write_script(&d.join("payload/runsc"), FAKE_RUNSC);
    write_script(
        &d.join("payload/containerd-shim-nanovisor-v1"),
        "#!/bin/sh\n# the shim\n",
    );
    write(&d.join("sa/token"), "t0ken");
    write(&d.join("sa/ca.crt"), "ca");
    std::fs::create_dir_all(d.join("tmp")).expect("mkdir tmp");
    let shim_toml =
        "runsc = \"/usr/local/bin/runsc\"\ndefault_acl_file = \"/etc/nanovisor/acl.yaml\"\n";
    write(&d.join("config/shim.toml"), shim_toml);
    write(&d.join("config/acl.yaml"), "version: 1\n");
    write(
        &d.join("config/checkpoint-images"),
        "hello reg.example.test/apps/hello@sha256:aa\nwarm 127.0.0.1:5000/warm:v1 plain-http\n",
    );
    let config = node.host("/etc/containerd/config.toml");
    write(&config, V2_CONFIG);
    for dir in ["/usr/local/bin", "/var/lib/nanovisor/checkpoints"] {
        std::fs::create_dir_all(node.host(dir)).expect("mkdir host dir");
    }

    let (ok, stderr) = node.run("install", false);
    assert!(ok, "install failed:\n{stderr}\n--- log ---\n{}", node.log());
    assert_eq!(read(&node.host("/usr/local/bin/runsc")), FAKE_RUNSC);
    assert!(node
        .host("/usr/local/bin/containerd-shim-nanovisor-v1")
        .is_file());
    assert_eq!(read(&node.host("/etc/nanovisor/shim.toml")), shim_toml);
    assert_eq!(read(&node.host("/etc/nanovisor/acl.yaml")), "version: 1\n");
    let images = node.host("/var/lib/nanovisor/checkpoints");
    assert_eq!(
        read(&images.join("hello/manifest.json")),
        "reg.example.test/apps/hello@sha256:aa\n"
    );
    assert!(images.join("warm/manifest.json").is_file());
    assert_eq!(
        node.count("runsc image pull --plain-http 127.0.0.1:5000/warm:v1"),
        1
    );
    assert_eq!(runtime_tables(&config, V2_PLUGIN).0, RUNTIME_TABLE);
    assert_eq!(
        node.count("systemctl restart containerd"),
        1,
        "{}",
        node.log()
    );
    assert!(
        node.log()
            .contains(r#"{"metadata":{"labels":{"nanovisor.dev/runtime":"ready"}}}"#)
            && node
                .log()
                .contains("https://[fd00::1]:443/api/v1/nodes/node-1"),
        "install did not label the node:\n{}",
        node.log()
    );
    assert!(!node
        .host("/etc/nanovisor/.containerd-restart-pending")
        .exists());
    // With hostPID every process on the node sees command lines: not the token's place.
    assert!(
        !node.log().contains("t0ken"),
        "the API token was on curl's command line"
    );

    // Again (a restarted pod): nothing to pull, nothing to restart; the label is set again.
    let (ok, stderr) = node.run("install", false);
    assert!(ok, "second install failed:\n{stderr}");
    assert_eq!(
        node.count("systemctl restart"),
        1,
        "a second install restarted containerd"
    );
    assert_eq!(
        node.count("runsc image pull"),
        2,
        "a second install pulled again"
    );
    assert_eq!(node.count("nanovisor.dev/runtime\":\"ready"), 2);

    // One image and the policy dropped from the chart: both leave the node.
    write(
        &d.join("config/checkpoint-images"),
        "hello reg.example.test/apps/hello@sha256:aa\n",
    );
    std::fs::remove_file(d.join("config/acl.yaml")).expect("rm acl.yaml");
    let (ok, stderr) = node.run("install", false);
    assert!(ok, "third install failed:\n{stderr}");
    assert!(!images.join("warm").exists() && images.join("hello").is_dir());
    assert!(!node.host("/etc/nanovisor/acl.yaml").exists());
    assert_eq!(node.count("systemctl restart"), 1);

    // Uninstall: label off, containerd's config as it was, files gone.
    let (ok, stderr) = node.run("uninstall", false);
    assert!(ok, "uninstall failed:\n{stderr}");
    assert_eq!(read(&config), V2_CONFIG);
    assert_eq!(node.count("systemctl restart"), 2);
    assert!(node
        .log()
        .contains(r#"{"metadata":{"labels":{"nanovisor.dev/runtime":null}}}"#));
    for gone in [
        "/usr/local/bin/runsc",
        "/usr/local/bin/containerd-shim-nanovisor-v1",
        "/etc/nanovisor/shim.toml",
        "/var/lib/nanovisor/checkpoints/hello",
    ] {
        assert!(!node.host(gone).exists(), "uninstall left {gone}");
    }

    // containerd refusing the edited config: the edit is undone, containerd is not
    // restarted and the node is not labelled.
    let labels_before = node.count("\"ready\"");
    let (ok, stderr) = node.run("install", true);
    assert!(
        !ok && stderr.contains("does not accept its edited config"),
        "{stderr}"
    );
    assert_eq!(read(&config), V2_CONFIG);
    assert_eq!(node.count("systemctl restart"), 2);
    assert_eq!(node.count("\"ready\""), labels_before);
    assert!(!node
        .host("/etc/nanovisor/.containerd-restart-pending")
        .exists());
}
