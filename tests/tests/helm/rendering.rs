//! Rendering the chart with check.py, and checking what it rendered.

use super::*;

/// One rendering of the chart: its directory (check.py's `render` output).
pub(super) struct Rendered {
    pub(super) name: &'static str,
    pub(super) dir: PathBuf,
    pub(super) facts: String,
}

impl Rendered {
    /// Asserts that the facts hold the line `OBJECT: PATH = JSON`.
    #[track_caller]
    pub(super) fn has(&self, line: &str) {
        assert!(
            self.facts.lines().any(|l| l == line),
            "{}: the rendered chart lacks `{line}`; it has:\n{}",
            self.name,
            self.facts
        );
    }

    /// The value (as JSON) of env variable NAME of the installer's init container.
    #[track_caller]
    pub(super) fn installer_env(&self, daemonset: &str, name: &str) -> String {
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

    pub(super) fn file(&self, key: &str) -> PathBuf {
        self.dir.join("files/nanovisor-config").join(key)
    }
}

pub(super) fn render(venv: &Path, chart: &Path, out: &Path, name: &'static str) -> Rendered {
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
pub(super) fn validate(venv: &Path, rendered: &Rendered) {
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
pub(super) fn shim_toml(venv: &Path, rendered: &Rendered) -> String {
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
pub(super) fn check_acl_policy(rendered: &Rendered, scratch: &Path) {
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
