//! Which side serves a call: the nanovisor handler (`nanovisor-pods`) or the upstream CRI
//! endpoint.
//!
//! - RunPodSandbox goes by its `runtime_handler`: the nanovisor handler's name → the handler;
//!   any other (the empty default included) → upstream.
//! - A call naming a pod or container goes to the side that owns it; an id the handler does
//!   not own goes upstream, and CreateContainer goes by its pod.
//! - Before the handler has started it cannot say what it owns: such calls go upstream, and a
//!   NotFound from there becomes Unavailable (the id may be the handler's), so that kubelet
//!   retries rather than concluding the pod is gone.

use tonic::{Code, Status};

use crate::handler::Handler;

/// Where one call goes.
pub enum Route<'a> {
    /// The nanovisor handler, started.
    Pods(&'a pods::Runtime),
    /// The nanovisor handler, not started yet.
    NotStarted,
    /// The upstream; `pending` when the handler is configured but not started (it may own the
    /// id).
    Upstream { pending: bool },
}

/// RunPodSandbox with `runtime_handler`.
pub fn by_handler<'a>(handler: Option<&'a Handler>, runtime_handler: &str) -> Route<'a> {
    match handler {
        Some(h) if h.name() == runtime_handler => match h.runtime() {
            Some(rt) => Route::Pods(rt),
            None => Route::NotStarted,
        },
        _ => Route::Upstream { pending: false },
    }
}

/// A call naming pod `id`.
pub fn by_pod<'a>(handler: Option<&'a Handler>, id: &str) -> Route<'a> {
    by_owner(handler, |rt| rt.owns_pod(id))
}

/// A call naming container `id`.
pub fn by_container<'a>(handler: Option<&'a Handler>, id: &str) -> Route<'a> {
    by_owner(handler, |rt| rt.owns_container(id))
}

fn by_owner<'a>(handler: Option<&'a Handler>, owns: impl Fn(&pods::Runtime) -> bool) -> Route<'a> {
    match handler {
        None => Route::Upstream { pending: false },
        Some(h) => match h.runtime() {
            Some(rt) if owns(rt) => Route::Pods(rt),
            Some(_) => Route::Upstream { pending: false },
            None => Route::Upstream { pending: true },
        },
    }
}

/// The upstream's error for a call naming an id, when the handler, which may own the id, has
/// not started: NotFound becomes Unavailable saying so; anything else passes.
pub fn pending_error(status: Status, not_started: impl FnOnce() -> Status) -> Status {
    if status.code() != Code::NotFound {
        return status;
    }
    let why = not_started();
    Status::unavailable(format!(
        "{} (upstream: {}); the id may be the nanovisor handler's, so ask again",
        why.message(),
        status.message()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_handler_everything_goes_upstream() {
        assert!(matches!(
            by_handler(None, "nanovisor"),
            Route::Upstream { pending: false }
        ));
        assert!(matches!(
            by_pod(None, "abc"),
            Route::Upstream { pending: false }
        ));
        assert!(matches!(
            by_container(None, "abc"),
            Route::Upstream { pending: false }
        ));
    }

    #[test]
    fn a_not_found_while_the_handler_starts_is_unavailable() {
        let e = pending_error(Status::not_found("sandbox \"x\" not found"), || {
            Status::unavailable("the nanovisor runtime handler has not started: no pool")
        });
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.message().contains("no pool"), "{e:?}");
        assert!(e.message().contains("sandbox \"x\" not found"), "{e:?}");
    }

    #[test]
    fn other_errors_while_the_handler_starts_pass() {
        let e = pending_error(Status::invalid_argument("bad"), || {
            Status::unavailable("unused")
        });
        assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "bad"));
    }
}
