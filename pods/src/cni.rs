//! CNI, as the spec (github.com/containernetworking/cni SPEC.md) has a runtime do it: the
//! first network configuration list in the configuration directory (by file name; `.conflist`,
//! or a single-plugin `.conf`/`.json`), each plugin of its chain run in turn with `ADD` (the
//! previous plugin's result as `prevResult`), and `DEL` in reverse order with the final result.
//! A plugin is an executable named by its `type`, found in the first bin directory holding it,
//! given `CNI_*` in its environment and its configuration on stdin; it answers on stdout with a
//! result or an error object (`{"code", "msg", "details"}`).
//!
//! The loopback plugin is not needed: the sandbox's loopback is netstack's own.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::reaper::Reaper;

/// How long one plugin may run.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest configuration file and plugin answer read.
const MAX_TEXT: u64 = 1 << 20;
/// The interface name the pod gets.
pub const IFNAME: &str = "eth0";

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("no CNI network configuration (*.conflist, *.conf, *.json) in {0}")]
    NoConfig(PathBuf),
    #[error("CNI configuration {path}: {message}")]
    BadConfig { path: PathBuf, message: String },
    #[error("CNI plugin {plugin:?} not found in {dirs:?}")]
    NoPlugin { plugin: String, dirs: Vec<PathBuf> },
    #[error("CNI plugin {plugin} {command}: {message}")]
    Failed {
        plugin: String,
        command: &'static str,
        message: String,
    },
}

/// A network configuration list, ready to run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct NetConfList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Value>,
}

/// What a plugin is run for: the pod's network namespace and identity.
pub struct Invocation<'a> {
    pub container_id: &'a str,
    pub netns: &'a Path,
    /// `CNI_ARGS` pairs (`K8S_POD_NAME` …).
    pub args: &'a [(String, String)],
    /// Capability arguments (`portMappings` …), each given to the plugins that declare it in
    /// their `capabilities` (CONVENTIONS.md), as `runtimeConfig`.
    pub runtime_config: &'a Value,
}

/// Reads the first configuration in `dir`.
pub fn load(dir: &Path) -> Result<(PathBuf, NetConfList), CniError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|_| CniError::NoConfig(dir.to_path_buf()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conflist" | "conf" | "json")
            )
        })
        .collect();
    files.sort();
    let path = files
        .into_iter()
        .next()
        .ok_or_else(|| CniError::NoConfig(dir.to_path_buf()))?;
    let bad = |message: String| CniError::BadConfig {
        path: path.clone(),
        message,
    };
    let mut text = String::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_TEXT).read_to_string(&mut text))
        .map_err(|e| bad(e.to_string()))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let list = parse_config(
        &value,
        path.extension().and_then(|e| e.to_str()) == Some("conflist"),
    )
    .map_err(bad)?;
    Ok((path, list))
}

/// A list from a `.conflist` document, or a one-plugin list from a `.conf`.
pub fn parse_config(value: &Value, is_list: bool) -> Result<NetConfList, String> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    let name = text("name").ok_or("no \"name\"")?;
    let cni_version = text("cniVersion").unwrap_or_else(|| "0.2.0".into());
    let plugins = if is_list {
        value
            .get("plugins")
            .and_then(Value::as_array)
            .cloned()
            .ok_or("no \"plugins\" list")?
    } else {
        vec![value.clone()]
    };
    if plugins.is_empty() {
        return Err("an empty \"plugins\" list".into());
    }
    for p in &plugins {
        let t = p.get("type").and_then(Value::as_str).unwrap_or_default();
        if t.is_empty() || t.contains('/') || t.starts_with('.') {
            return Err(format!("a plugin with a bad \"type\": {t:?}"));
        }
    }
    Ok(NetConfList {
        name,
        cni_version,
        plugins,
    })
}

/// One plugin's stdin: its entry with the list's name and version, the capability arguments
/// it asks for as `runtimeConfig`, and `prevResult`.
fn plugin_config(
    list: &NetConfList,
    plugin: &Value,
    prev: Option<&Value>,
    runtime: &Value,
) -> Value {
    let mut config = plugin.clone();
    let wanted: serde_json::Map<String, Value> = plugin
        .get("capabilities")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, on)| on.as_bool() == Some(true))
        .filter_map(|(k, _)| Some((k.clone(), runtime.get(k)?.clone())))
        .collect();
    if let Some(obj) = config.as_object_mut() {
        obj.insert("name".into(), json!(list.name));
        obj.insert("cniVersion".into(), json!(list.cni_version));
        if !wanted.is_empty() {
            obj.insert("runtimeConfig".into(), Value::Object(wanted));
        }
        if let Some(prev) = prev {
            obj.insert("prevResult".into(), prev.clone());
        }
    }
    config
}

fn plugin_type(plugin: &Value) -> String {
    plugin
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `CNI_ARGS`: `IgnoreUnknown=1;K=V;…`.
pub fn cni_args(args: &[(String, String)]) -> String {
    std::iter::once("IgnoreUnknown=1".to_string())
        .chain(args.iter().map(|(k, v)| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(";")
}

/// Runs the chain's ADD; the final result.
pub fn add(
    reaper: &Reaper,
    bin_dirs: &[PathBuf],
    list: &NetConfList,
    inv: &Invocation<'_>,
) -> Result<Value, CniError> {
    let mut prev: Option<Value> = None;
    for (i, plugin) in list.plugins.iter().enumerate() {
        let config = plugin_config(list, plugin, prev.as_ref(), inv.runtime_config);
        match run(reaper, bin_dirs, "ADD", &config, inv) {
            Ok(result) => prev = Some(result),
            Err(e) => {
                // Undo what the plugins before this one did.
                let done = NetConfList {
                    plugins: list.plugins[..i].to_vec(),
                    ..list.clone()
                };
                let _ = del(reaper, bin_dirs, &done, inv, prev.as_ref());
                return Err(e);
            }
        }
    }
    Ok(prev.unwrap_or(Value::Null))
}

/// Runs the chain's DEL in reverse order; every plugin runs, the first error is returned.
pub fn del(
    reaper: &Reaper,
    bin_dirs: &[PathBuf],
    list: &NetConfList,
    inv: &Invocation<'_>,
    result: Option<&Value>,
) -> Result<(), CniError> {
    let mut first = None;
    for plugin in list.plugins.iter().rev() {
        let config = plugin_config(list, plugin, result, inv.runtime_config);
        if let Err(e) = run(reaper, bin_dirs, "DEL", &config, inv) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

fn find_plugin(bin_dirs: &[PathBuf], name: &str) -> Result<PathBuf, CniError> {
    bin_dirs
        .iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| CniError::NoPlugin {
            plugin: name.into(),
            dirs: bin_dirs.to_vec(),
        })
}

fn run(
    reaper: &Reaper,
    bin_dirs: &[PathBuf],
    command: &'static str,
    config: &Value,
    inv: &Invocation<'_>,
) -> Result<Value, CniError> {
    let plugin = plugin_type(config);
    let binary = find_plugin(bin_dirs, &plugin)?;
    let failed = |message: String| CniError::Failed {
        plugin: plugin.clone(),
        command,
        message,
    };
    let cni_path = std::env::join_paths(bin_dirs).map_err(|e| failed(e.to_string()))?;
    let mut cmd = Command::new(&binary);
    cmd.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", IFNAME)
        .env("CNI_ARGS", cni_args(inv.args))
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Before the spawn: an exit of this pid filed earlier is an earlier process's.
    let since = reaper.exits.mark();
    reaper.kick();
    let mut child = cmd
        .spawn()
        .map_err(|e| failed(format!("starting {}: {e}", binary.display())))?;
    let pid = child.id() as i32;
    let input = config.to_string();
    if let Some(mut stdin) = child.stdin.take() {
        // Small (a config), so the pipe takes it whole; a plugin that does not read it fails.
        let _ = stdin.write_all(input.as_bytes());
    }
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = (&mut pipe).take(MAX_TEXT).read_to_string(&mut text);
            text
        })
    });
    let mut stdout = String::new();
    if let Some(pipe) = child.stdout.take() {
        let _ = pipe.take(MAX_TEXT).read_to_string(&mut stdout);
    }
    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    let Some(exit) = reaper.exits.wait_after(pid, since, Some(PLUGIN_TIMEOUT)) else {
        let _ = child.kill();
        return Err(failed(format!("no answer within {PLUGIN_TIMEOUT:?}")));
    };
    if exit.status != 0 {
        return Err(failed(error_message(&stdout, &stderr, exit.status)));
    }
    if command == "DEL" || stdout.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&stdout).map_err(|e| failed(format!("a result that is not JSON ({e})")))
}

/// The message of a failed plugin: its error object's `msg` (and `details`), else stderr.
fn error_message(stdout: &str, stderr: &str, status: i32) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(stdout) {
        if let Some(msg) = v.get("msg").and_then(Value::as_str) {
            let code = v.get("code").and_then(Value::as_u64).unwrap_or(0);
            return match v
                .get("details")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
            {
                Some(d) => format!("{msg}: {d} (code {code})"),
                None => format!("{msg} (code {code})"),
            };
        }
    }
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    }
    .trim();
    if text.is_empty() {
        format!("exit status {status}")
    } else {
        text.chars().take(2000).collect()
    }
}

/// CRI's port mappings as the `portMappings` capability argument (CONVENTIONS.md).
pub fn port_mappings(mappings: &[k8s_cri::v1::PortMapping]) -> Value {
    let list: Vec<Value> = mappings
        .iter()
        .filter(|m| m.host_port > 0)
        .map(|m| {
            let protocol = match k8s_cri::v1::Protocol::try_from(m.protocol) {
                Ok(k8s_cri::v1::Protocol::Udp) => "udp",
                Ok(k8s_cri::v1::Protocol::Sctp) => "sctp",
                _ => "tcp",
            };
            let mut v = json!({"hostPort": m.host_port, "containerPort": m.container_port, "protocol": protocol});
            if !m.host_ip.is_empty() {
                v["hostIP"] = json!(m.host_ip);
            }
            v
        })
        .collect();
    if list.is_empty() {
        Value::Null
    } else {
        json!({ "portMappings": list })
    }
}

/// The pod's addresses in a result (spec ≥ 0.3: `ips[].address`; 0.2: `ip4.ip`, `ip6.ip`),
/// without their prefix lengths, IPv4 first.
pub fn addresses(result: &Value) -> Vec<String> {
    let mut out: Vec<String> = result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.get("address").and_then(Value::as_str))
        .chain(
            ["ip4", "ip6"]
                .iter()
                .filter_map(|k| result.get(k)?.get("ip")?.as_str()),
        )
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .collect();
    out.sort_by_key(|a| a.contains(':'));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_addresses() {
        let r = json!({"cniVersion":"0.4.0","ips":[
            {"version":"6","address":"fd00::5/64"},
            {"version":"4","address":"10.211.3.5/24","gateway":"10.211.3.1"}]});
        assert_eq!(addresses(&r), ["10.211.3.5", "fd00::5"]);
        let old = json!({"ip4":{"ip":"10.0.0.2/16"}});
        assert_eq!(addresses(&old), ["10.0.0.2"]);
        assert!(addresses(&Value::Null).is_empty());
    }

    #[test]
    fn configs_and_chains() {
        let list = parse_config(
            &json!({"cniVersion":"0.4.0","name":"n","plugins":[{"type":"bridge"},{"type":"portmap"}]}),
            true,
        )
        .expect("valid");
        assert_eq!(list.plugins.len(), 2);
        let prev = json!({"ips":[]});
        let c = plugin_config(&list, &list.plugins[1], Some(&prev), &Value::Null);
        assert_eq!(c["name"], "n");
        assert_eq!(c["cniVersion"], "0.4.0");
        assert_eq!(c["prevResult"], prev);
        assert!(c.get("runtimeConfig").is_none());
        let portmap =
            json!({"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}});
        let runtime = json!({"portMappings": [{"hostPort": 80}], "bandwidth": {"x": 1}});
        let c = plugin_config(&list, &portmap, None, &runtime);
        assert_eq!(
            c["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 80}]})
        );
        let single = parse_config(&json!({"name":"n","type":"bridge"}), false).expect("valid");
        assert_eq!(single.cni_version, "0.2.0");
        for bad in [
            json!({"plugins":[{"type":"x"}]}),
            json!({"name":"n","plugins":[]}),
            json!({"name":"n","plugins":[{"type":"../x"}]}),
        ] {
            assert!(parse_config(&bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn port_mapping_capability() {
        use k8s_cri::v1::{PortMapping, Protocol};
        assert_eq!(port_mappings(&[]), Value::Null);
        let m = [
            PortMapping {
                protocol: Protocol::Udp as i32,
                container_port: 53,
                host_port: 5353,
                host_ip: "127.0.0.1".into(),
            },
            PortMapping {
                protocol: Protocol::Tcp as i32,
                container_port: 80,
                host_port: 0,
                host_ip: String::new(),
            },
        ];
        assert_eq!(
            port_mappings(&m),
            json!({"portMappings": [{"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}]})
        );
    }

    #[test]
    fn args_and_errors() {
        let args = [("K8S_POD_NAME".to_string(), "web".to_string())];
        assert_eq!(cni_args(&args), "IgnoreUnknown=1;K8S_POD_NAME=web");
        assert_eq!(
            error_message(r#"{"code":7,"msg":"no IP","details":"range full"}"#, "", 1),
            "no IP: range full (code 7)"
        );
        assert_eq!(error_message("", "boom\n", 1), "boom");
        assert_eq!(error_message("", "", 2), "exit status 2");
    }

    #[test]
    fn the_first_file_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(load(dir.path()), Err(CniError::NoConfig(_))));
        std::fs::write(
            dir.path().join("20-b.conflist"),
            r#"{"name":"b","plugins":[{"type":"x"}]}"#,
        )
        .expect("write");
        std::fs::write(
            dir.path().join("10-a.conf"),
            r#"{"name":"a","type":"bridge"}"#,
        )
        .expect("write");
        let (path, list) = load(dir.path()).expect("loaded");
        assert!(path.ends_with("10-a.conf"));
        assert_eq!(list.name, "a");
    }
}
