//! What nanovisor-cri answers when both sides have a say: Version (ours, with the upstream's
//! in the build metadata), Status (conditions combined, the upstream's info kept) and the
//! list calls (the upstream's items, then the nanovisor handler's).

use k8s_cri::v1::{RuntimeCondition, RuntimeHandler, StatusResponse, VersionResponse};

/// What Version reports as the runtime's name.
pub const RUNTIME_NAME: &str = "nanovisor-cri";

/// The condition nanovisor-cri adds when it serves the nanovisor handler: true once the
/// handler has started. kubelet reads only `RuntimeReady` and `NetworkReady`, so a handler
/// that cannot start shows here without taking the node (and its runc pods) down.
pub const HANDLER_READY: &str = "NanovisorHandlerReady";

/// Version: our name and version; the upstream's name and version ride in the semver build
/// metadata (`0.1.0+upstream.containerd.1.6.20-ds1`); the CRI API version is the upstream's,
/// since every call but the nanovisor handler's is served by it.
pub fn version(upstream: &VersionResponse) -> VersionResponse {
    let theirs = format!(
        "upstream.{}.{}",
        upstream.runtime_name, upstream.runtime_version
    );
    VersionResponse {
        version: upstream.version.clone(),
        runtime_name: RUNTIME_NAME.into(),
        runtime_version: format!("{}+{}", env!("CARGO_PKG_VERSION"), semver_build(&theirs)),
        runtime_api_version: if upstream.runtime_api_version.is_empty() {
            "v1".into()
        } else {
            upstream.runtime_api_version.clone()
        },
    }
}

/// `text` as semver build metadata: dot-separated non-empty identifiers of `[0-9A-Za-z-]`.
fn semver_build(text: &str) -> String {
    text.split('.')
        .map(|part| {
            part.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect::<String>()
        })
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

/// How the nanovisor handler stands, for Status.
pub enum Handler {
    /// Not configured: Status is the upstream's.
    Absent,
    /// Configured, not started (yet): why.
    NotStarted { handler: String, why: String },
    /// Started: its name and conditions.
    Started {
        handler: String,
        conditions: Vec<RuntimeCondition>,
    },
}

/// Status: each upstream condition is true only if the handler's condition of the same type
/// (if it reports one) is true too; the handler's other conditions are added; the upstream's
/// info (verbose) and features are kept; the handler is added to a non-empty list of runtime
/// handlers.
pub fn status(mut upstream: StatusResponse, handler: Handler) -> StatusResponse {
    let (name, ours, ready) = match handler {
        Handler::Absent => return upstream,
        Handler::NotStarted { handler, why } => (
            handler,
            Vec::new(),
            RuntimeCondition {
                r#type: HANDLER_READY.into(),
                status: false,
                reason: "NanovisorHandlerNotStarted".into(),
                message: why,
            },
        ),
        Handler::Started {
            handler,
            conditions,
        } => (
            handler,
            conditions,
            RuntimeCondition {
                r#type: HANDLER_READY.into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
        ),
    };
    let status = upstream.status.get_or_insert_with(Default::default);
    for theirs in ours {
        match status
            .conditions
            .iter_mut()
            .find(|c| c.r#type == theirs.r#type)
        {
            Some(c) => {
                if c.status && !theirs.status {
                    c.status = false;
                    c.reason = theirs.reason;
                    c.message = format!("nanovisor handler: {}", theirs.message);
                }
            }
            None => status.conditions.push(theirs),
        }
    }
    status.conditions.push(ready);
    if !upstream.runtime_handlers.is_empty() {
        upstream.runtime_handlers.retain(|h| h.name != name);
        upstream.runtime_handlers.push(RuntimeHandler {
            name,
            features: Some(Default::default()),
        });
    }
    upstream
}

/// A list call's answer: the upstream's items, then the handler's.
pub fn items<T>(mut upstream: Vec<T>, ours: Vec<T>) -> Vec<T> {
    upstream.extend(ours);
    upstream
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::RuntimeStatus;

    fn cond(t: &str, status: bool) -> RuntimeCondition {
        RuntimeCondition {
            r#type: t.into(),
            status,
            reason: if status { "" } else { "Down" }.into(),
            message: if status { "" } else { "it is down" }.into(),
        }
    }

    fn upstream(conditions: Vec<RuntimeCondition>) -> StatusResponse {
        StatusResponse {
            status: Some(RuntimeStatus { conditions }),
            info: [("config".to_string(), "{}".to_string())].into(),
            ..Default::default()
        }
    }

    fn find<'a>(s: &'a StatusResponse, t: &str) -> &'a RuntimeCondition {
        s.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.r#type == t))
            .unwrap_or_else(|| panic!("no condition {t} in {s:?}"))
    }

    #[test]
    fn version_is_ours_and_names_the_upstream() {
        let v = version(&VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "containerd".into(),
            runtime_version: "1.6.20~ds1".into(),
            runtime_api_version: "v1".into(),
        });
        assert_eq!(v.runtime_name, "nanovisor-cri");
        assert_eq!(
            v.runtime_version,
            format!(
                "{}+upstream.containerd.1.6.20-ds1",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert_eq!(
            (v.version.as_str(), v.runtime_api_version.as_str()),
            ("0.1.0", "v1")
        );
    }

    #[test]
    fn semver_build_metadata_has_no_empty_identifiers() {
        assert_eq!(semver_build("upstream..x y.é"), "upstream.x-y.-");
    }

    #[test]
    fn without_the_handler_status_is_the_upstreams() {
        let up = upstream(vec![
            cond("RuntimeReady", true),
            cond("NetworkReady", false),
        ]);
        assert_eq!(status(up.clone(), Handler::Absent), up);
    }

    #[test]
    fn a_condition_is_true_only_if_true_on_both_sides() {
        let up = upstream(vec![cond("RuntimeReady", true), cond("NetworkReady", true)]);
        let s = status(
            up,
            Handler::Started {
                handler: "nanovisor".into(),
                conditions: vec![cond("RuntimeReady", false), cond("NetworkReady", true)],
            },
        );
        let runtime = find(&s, "RuntimeReady");
        assert!(!runtime.status);
        assert_eq!(runtime.reason, "Down");
        assert_eq!(runtime.message, "nanovisor handler: it is down");
        assert!(find(&s, "NetworkReady").status);
        assert!(find(&s, HANDLER_READY).status);
        assert_eq!(s.info.get("config").map(String::as_str), Some("{}"));
    }

    #[test]
    fn an_upstream_condition_that_is_false_stays_false_with_its_reason() {
        let up = upstream(vec![cond("NetworkReady", false)]);
        let s = status(
            up,
            Handler::Started {
                handler: "nanovisor".into(),
                conditions: vec![cond("NetworkReady", true), cond("PoolReady", true)],
            },
        );
        let net = find(&s, "NetworkReady");
        assert!(!net.status);
        assert_eq!(net.message, "it is down");
        assert!(find(&s, "PoolReady").status);
    }

    #[test]
    fn a_handler_not_started_leaves_kubelets_conditions_alone() {
        let up = upstream(vec![cond("RuntimeReady", true), cond("NetworkReady", true)]);
        let s = status(
            up,
            Handler::NotStarted {
                handler: "nanovisor".into(),
                why: "no pool".into(),
            },
        );
        assert!(find(&s, "RuntimeReady").status);
        assert!(find(&s, "NetworkReady").status);
        let ours = find(&s, HANDLER_READY);
        assert!(!ours.status);
        assert_eq!(ours.message, "no pool");
    }

    #[test]
    fn the_handler_joins_a_list_of_runtime_handlers() {
        let mut up = upstream(vec![]);
        let s = status(
            up.clone(),
            Handler::Started {
                handler: "nanovisor".into(),
                conditions: vec![],
            },
        );
        assert!(s.runtime_handlers.is_empty(), "an old upstream lists none");
        up.runtime_handlers = vec![
            RuntimeHandler {
                name: "runc".into(),
                features: None,
            },
            RuntimeHandler {
                name: "nanovisor".into(),
                features: None,
            },
        ];
        let s = status(
            up,
            Handler::Started {
                handler: "nanovisor".into(),
                conditions: vec![],
            },
        );
        let names: Vec<&str> = s.runtime_handlers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["runc", "nanovisor"]);
    }

    #[test]
    fn items_are_the_upstreams_then_ours() {
        assert_eq!(items(vec![1, 2], vec![3]), [1, 2, 3]);
    }
}
