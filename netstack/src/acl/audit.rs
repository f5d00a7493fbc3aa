//! The audit log: one JSON object per line for each verdict worth writing, to stderr, a
//! file or any writer, and the RFC 3339 timestamps on those lines.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::rule::{Action, Direction, Protocol};

/// Which verdicts are written. Verdicts of `action: audit` rules are written in every mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditMode {
    /// Only `action: audit` verdicts.
    Off,
    /// Denies and `action: audit` verdicts.
    #[default]
    Denies,
    /// Every verdict.
    All,
}

impl AuditMode {
    /// Whether a verdict is written: `allowed`, reached through a rule with `action` (or
    /// the default when `None`).
    pub fn logs(self, allowed: bool, action: Option<Action>) -> bool {
        action == Some(Action::Audit)
            || match self {
                AuditMode::Off => false,
                AuditMode::Denies => !allowed,
                AuditMode::All => true,
            }
    }

    /// The word used in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditMode::Off => "off",
            AuditMode::Denies => "denies",
            AuditMode::All => "all",
        }
    }
}

/// What a verdict was about.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Subject<'a> {
    /// An egress or ingress flow; `local` is the sandbox side.
    Flow {
        direction: Direction,
        protocol: Protocol,
        local: SocketAddr,
        remote: SocketAddr,
    },
    Listen {
        protocol: Protocol,
        local: SocketAddr,
    },
    Dns {
        name: &'a str,
        qtype: &'a str,
    },
}

/// One audit line, fields in the order they are written.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    sandbox: &'a str,
    direction: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    qtype: Option<&'a str>,
    rule: Option<&'a str>,
    verdict: &'static str,
}

enum Sink {
    Stderr,
    Writer(Box<dyn Write + Send>),
    Discard,
}

/// Where a sandbox's audit lines go. Each line is written with one `write_all` and
/// flushed, under a mutex, so lines from different threads never interleave.
pub struct AuditLog {
    sandbox: String,
    sink: Mutex<Sink>,
    /// A failed write is reported once, not once per verdict.
    warned: AtomicBool,
}

impl AuditLog {
    /// Lines go to the process's stderr.
    pub fn stderr(sandbox: &str) -> AuditLog {
        AuditLog::with_sink(sandbox, Sink::Stderr)
    }

    /// Lines are appended to `path`, created with mode 0600 if missing.
    pub fn file(sandbox: &str, path: &Path) -> io::Result<AuditLog> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        Ok(AuditLog::with_sink(sandbox, Sink::Writer(Box::new(file))))
    }

    /// Lines go to `w` (tests, or a caller-owned pipe).
    pub fn to_writer(sandbox: &str, w: Box<dyn Write + Send>) -> AuditLog {
        AuditLog::with_sink(sandbox, Sink::Writer(w))
    }

    /// Lines are dropped.
    pub fn discard(sandbox: &str) -> AuditLog {
        AuditLog::with_sink(sandbox, Sink::Discard)
    }

    fn with_sink(sandbox: &str, sink: Sink) -> AuditLog {
        AuditLog {
            sandbox: sandbox.to_string(),
            sink: Mutex::new(sink),
            warned: AtomicBool::new(false),
        }
    }

    /// The sandbox id written on every line.
    pub fn sandbox(&self) -> &str {
        &self.sandbox
    }

    /// Writes the line for one verdict.
    pub(crate) fn record(&self, subject: Subject<'_>, rule: Option<&str>, verdict: &'static str) {
        self.record_at(SystemTime::now(), subject, rule, verdict);
    }

    pub(crate) fn record_at(
        &self,
        time: SystemTime,
        subject: Subject<'_>,
        rule: Option<&str>,
        verdict: &'static str,
    ) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*sink, Sink::Discard) {
            return;
        }
        let mut line = Line {
            time: rfc3339_millis(time),
            sandbox: &self.sandbox,
            direction: "",
            protocol: None,
            local: None,
            remote: None,
            name: None,
            qtype: None,
            rule,
            verdict,
        };
        match subject {
            Subject::Flow {
                direction,
                protocol,
                local,
                remote,
            } => {
                line.direction = direction.as_str();
                line.protocol = Some(protocol.as_str());
                line.local = Some(local);
                line.remote = Some(remote);
            }
            Subject::Listen { protocol, local } => {
                line.direction = Direction::Listen.as_str();
                line.protocol = Some(protocol.as_str());
                line.local = Some(local);
            }
            Subject::Dns { name, qtype } => {
                line.direction = Direction::Dns.as_str();
                line.name = Some(name);
                line.qtype = Some(qtype);
            }
        }
        let mut text = match serde_json::to_vec(&line) {
            Ok(text) => text,
            Err(err) => return self.warn(&err),
        };
        text.push(b'\n');
        let result = match &mut *sink {
            Sink::Stderr => {
                let mut stderr = io::stderr().lock();
                stderr.write_all(&text).and_then(|()| stderr.flush())
            }
            Sink::Writer(w) => w.write_all(&text).and_then(|()| w.flush()),
            Sink::Discard => Ok(()),
        };
        if let Err(err) = result {
            self.warn(&err);
        }
    }

    fn warn(&self, err: &dyn fmt::Display) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(sandbox = %self.sandbox, "cannot write the ACL audit log: {err}");
        }
    }
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sink = match *self.sink.lock().unwrap_or_else(PoisonError::into_inner) {
            Sink::Stderr => "stderr",
            Sink::Writer(_) => "writer",
            Sink::Discard => "discard",
        };
        f.debug_struct("AuditLog")
            .field("sandbox", &self.sandbox)
            .field("sink", &sink)
            .finish()
    }
}

/// `time` as RFC 3339 in UTC with milliseconds: `2026-11-22T10:00:00.123Z`. Times before
/// the epoch are written as the epoch.
pub fn rfc3339_millis(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> String {
        rfc3339_millis(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
    }

    #[test]
    fn timestamps() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_700_000_000, 5), "2023-11-14T22:13:20.005Z");
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(1_798_761_599, 123), "2026-12-31T23:59:59.123Z");
        assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn modes() {
        use Action::*;
        assert!(!AuditMode::Off.logs(false, Some(Deny)));
        assert!(AuditMode::Off.logs(true, Some(Audit)));
        assert!(AuditMode::Denies.logs(false, None));
        assert!(!AuditMode::Denies.logs(true, Some(Allow)));
        assert!(AuditMode::All.logs(true, None));
    }

    #[test]
    fn file_is_private_and_appended() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("acl-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("file system");
        let path = dir.join("audit.log");
        let _ = std::fs::remove_file(&path);
        for _ in 0..2 {
            let log = AuditLog::file("sb", &path).expect("file system");
            log.record(
                Subject::Dns {
                    name: "a.test",
                    qtype: "A",
                },
                None,
                "deny",
            );
        }
        let text = std::fs::read_to_string(&path).expect("file system");
        assert_eq!(text.lines().count(), 2);
        let mode = std::fs::metadata(&path)
            .expect("file system")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).expect("file system");
    }
}
