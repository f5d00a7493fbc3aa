//! The installer (`install.sh`), on a fake host.

use super::containerd_config::{runtime_tables, RUNTIME_TABLE, V2_CONFIG, V2_PLUGIN};
use super::*;

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
