//! The sandbox process's own syscall allowlist: `seccomp_policy.json`, reviewed data with
//! a reason on every entry, compiled with seccompiler when the sandbox confines itself
//! and applied to every thread (TSYNC).
//!
//! Two filters are installed:
//! - `enosys`: makes `clone3` fail with ENOSYS. Its flags live in memory BPF cannot
//!   read, so glibc is made to fall back to `clone`, whose flags the allowlist checks
//!   (threads yes, processes no). When filters disagree the kernel takes the strictest
//!   action, so this ERRNO wins over the allowlist's ALLOW.
//! - `allow`: the allowlist. Anything else kills the whole process
//!   (`SECCOMP_RET_KILL_PROCESS`, seen by the parent as SIGSYS) — or, with
//!   `NANOVISOR_SECCOMP=log` in the sandbox process's environment, is allowed and logged
//!   by the kernel (`SECCOMP_RET_LOG`: an audit line `type=1326 … syscall=N` in `dmesg`
//!   or the audit log). Use `log` to find a missing entry, never in production.
//!
//! The policy has its own format (not seccompiler's) so that every rule carries a `why`
//! and [`Policy::parse`] can refuse duplicates and rules without a reason. It is
//! translated to seccompiler's JSON (the `why` becomes seccompiler's `comment`) and
//! compiled with `compile_from_json`, whose syscall table refuses unknown names.

use std::collections::{BTreeMap, HashSet};

use anyhow::{anyhow, bail, Context as _};
use seccompiler::{BpfProgram, TargetArch};
use serde::Deserialize;
use serde_json::{json, Value};

/// The allowlist, reviewed as data.
const POLICY_JSON: &str = include_str!("seccomp_policy.json");

/// The environment variable that turns kills into log lines.
pub const MODE_ENV: &str = "NANOVISOR_SECCOMP";

/// The environment variable that enables the sentry's debug hooks
/// (`sentry/src/syscalls/debug.rs`), one of which has the sentry make a host syscall
/// this policy forbids: `NANOVISOR_DEBUG_HOOKS=1` in the environment of `runsc create`
/// or `run`, which the sandbox process inherits. For security tests, never production.
pub const DEBUG_HOOKS_ENV: &str = "NANOVISOR_DEBUG_HOOKS";

/// Whether the operator asked for the debug hooks. Only the sandbox process's own
/// environment counts: the container's `process.env` is the guest's, not ours.
pub fn debug_hooks_requested() -> bool {
    std::env::var_os(DEBUG_HOOKS_ENV).is_some_and(|v| v == "1")
}

/// What a syscall outside the allowlist does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// `SECCOMP_RET_KILL_PROCESS`: the process dies of SIGSYS.
    KillProcess,
    /// `SECCOMP_RET_LOG`: the call proceeds and the kernel logs it (debugging only).
    Log,
}

impl Mismatch {
    /// From `NANOVISOR_SECCOMP`: unset, empty or `kill` → kill; `log` → log.
    pub fn from_env() -> anyhow::Result<Mismatch> {
        match std::env::var(MODE_ENV) {
            Err(std::env::VarError::NotPresent) => Mismatch::parse(""),
            Ok(v) => Mismatch::parse(&v),
            Err(e) => bail!("{MODE_ENV}: {e}"),
        }
    }

    fn parse(value: &str) -> anyhow::Result<Mismatch> {
        match value {
            "" | "kill" => Ok(Mismatch::KillProcess),
            "log" => Ok(Mismatch::Log),
            v => bail!("{MODE_ENV}={v:?}: expected \"kill\" or \"log\""),
        }
    }

    /// The action's name in seccompiler's JSON.
    fn json_action(self) -> &'static str {
        match self {
            Mismatch::KillProcess => "kill_process",
            Mismatch::Log => "log",
        }
    }
}

/// Install the policy on every thread, with the mismatch action `NANOVISOR_SECCOMP`
/// asks for. Last step of confinement: after it, only the listed syscalls work.
pub fn install() -> anyhow::Result<()> {
    install_with(Mismatch::from_env()?)
}

/// [`install`] with an explicit mismatch action.
pub fn install_with(mismatch: Mismatch) -> anyhow::Result<()> {
    // In case `caps::drop_all_but` was skipped: the host's /proc must not stay open.
    super::forget_task_dir();
    if mismatch == Mismatch::Log {
        tracing::warn!(
            "{MODE_ENV}=log: syscalls outside the sandbox's policy are logged, not refused"
        );
    }
    let Filters { allow, enosys } = compile(mismatch, std::process::id())?;
    // `enosys` first: it lets everything else through, including the seccomp() call
    // that installs the allowlist (which does not list seccomp).
    for (name, prog) in [("enosys", enosys), ("allow", allow)] {
        seccompiler::apply_filter_all_threads(&prog)
            .map_err(|e| anyhow!("installing seccomp filter {name:?} on every thread: {e}"))?;
    }
    Ok(())
}

/// The two BPF programs of the policy.
struct Filters {
    allow: BpfProgram,
    enosys: BpfProgram,
}

/// Compile the policy for process `pid` (`self_pid` in the policy).
fn compile(mismatch: Mismatch, pid: u32) -> anyhow::Result<Filters> {
    let policy = Policy::parse(POLICY_JSON)?;
    let json = policy.to_seccompiler(mismatch, pid)?;
    let mut programs =
        seccompiler::compile_from_json(json.to_string().as_bytes(), TargetArch::x86_64)
            .map_err(|e| anyhow!("compiling seccomp_policy.json: {e}"))?;
    let mut take = |name: &str| {
        programs
            .remove(name)
            .ok_or_else(|| anyhow!("seccomp filter {name:?} missing"))
    };
    Ok(Filters {
        allow: take("allow")?,
        enosys: take("enosys")?,
    })
}

/// `seccomp_policy.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Policy {
    #[allow(dead_code)] // documentation for the reader of the JSON
    about: String,
    allow: Vec<Rule>,
    enosys: Vec<Rule>,
}

/// One syscall: allowed outright, or only with one of the argument patterns in `only`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    syscall: String,
    why: String,
    #[serde(default)]
    only: Option<Vec<Pattern>>,
}

/// Argument conditions that must all hold.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Pattern {
    why: String,
    args: Vec<Arg>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Arg {
    index: u8,
    #[serde(rename = "type")]
    width: Width,
    op: Op,
    #[serde(default)]
    mask: Option<Number>,
    val: Number,
}

#[derive(Debug, Deserialize, PartialEq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Width {
    Dword,
    Qword,
}

#[derive(Debug, Deserialize, PartialEq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Op {
    Eq,
    Ne,
    Ge,
    Gt,
    Le,
    Lt,
    MaskedEq,
}

/// A value in the policy: a number, `"0x…"`, or `"self_pid"`.
#[derive(Debug, Deserialize, PartialEq, Clone)]
#[serde(untagged)]
enum Number {
    Int(u64),
    Text(String),
}

impl Number {
    fn resolve(&self, pid: u32) -> anyhow::Result<u64> {
        match self {
            Number::Int(n) => Ok(*n),
            Number::Text(s) if s == "self_pid" => Ok(pid.into()),
            Number::Text(s) => s
                .strip_prefix("0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or_else(|| anyhow!("{s:?}: expected a number, \"0x…\" or \"self_pid\"")),
        }
    }
}

impl Policy {
    /// Parse and check: every rule and pattern has a reason, no syscall is listed twice,
    /// no pattern twice, every `enosys` syscall is also allowed (else the allowlist would
    /// kill it first).
    fn parse(text: &str) -> anyhow::Result<Policy> {
        let policy: Policy = serde_json::from_str(text).context("parsing seccomp_policy.json")?;
        for (list, rules) in [("allow", &policy.allow), ("enosys", &policy.enosys)] {
            let mut seen = HashSet::new();
            for rule in rules {
                let name = &rule.syscall;
                if !seen.insert(name.as_str()) {
                    bail!("seccomp_policy.json: {list}: {name} is listed twice");
                }
                if rule.why.trim().is_empty() {
                    bail!("seccomp_policy.json: {list}: {name} has no \"why\"");
                }
                let Some(only) = &rule.only else { continue };
                if list == "enosys" {
                    bail!("seccomp_policy.json: enosys: {name}: argument patterns are not supported there");
                }
                if only.is_empty() {
                    bail!("seccomp_policy.json: {name}: \"only\" is empty (drop it to allow every call)");
                }
                for (i, p) in only.iter().enumerate() {
                    if p.why.trim().is_empty() {
                        bail!("seccomp_policy.json: {name}: pattern {i} has no \"why\"");
                    }
                    if p.args.is_empty() {
                        bail!("seccomp_policy.json: {name}: pattern {i} has no args");
                    }
                    if only[..i].iter().any(|q| q.args == p.args) {
                        bail!("seccomp_policy.json: {name}: pattern {i} repeats an earlier one");
                    }
                    if p.args
                        .iter()
                        .any(|a| (a.op == Op::MaskedEq) != a.mask.is_some())
                    {
                        bail!("seccomp_policy.json: {name}: \"mask\" goes with masked_eq, and only with it");
                    }
                }
            }
        }
        let allowed: HashSet<_> = policy.allow.iter().map(|r| r.syscall.as_str()).collect();
        for rule in &policy.enosys {
            if !allowed.contains(rule.syscall.as_str()) {
                bail!(
                    "seccomp_policy.json: enosys: {} is not in the allowlist, which would kill it first",
                    rule.syscall
                );
            }
        }
        Ok(policy)
    }

    /// seccompiler's JSON: filters `allow` and `enosys`. A syscall with several
    /// patterns becomes several rules, any of which matches.
    fn to_seccompiler(&self, mismatch: Mismatch, pid: u32) -> anyhow::Result<Value> {
        let mut allow = Vec::new();
        for rule in &self.allow {
            let Some(patterns) = &rule.only else {
                allow.push(json!({ "syscall": rule.syscall, "comment": rule.why }));
                continue;
            };
            for p in patterns {
                let args = p
                    .args
                    .iter()
                    .map(|a| a.to_seccompiler(pid))
                    .collect::<anyhow::Result<Vec<_>>>()
                    .with_context(|| format!("seccomp_policy.json: {}", rule.syscall))?;
                allow.push(json!({ "syscall": rule.syscall, "args": args, "comment": p.why }));
            }
        }
        let enosys: Vec<_> = self
            .enosys
            .iter()
            .map(|r| json!({ "syscall": r.syscall, "comment": r.why }))
            .collect();
        let filters = BTreeMap::from([
            (
                "allow",
                json!({
                    "mismatch_action": mismatch.json_action(),
                    "match_action": "allow",
                    "filter": allow,
                }),
            ),
            (
                "enosys",
                json!({
                    "mismatch_action": "allow",
                    "match_action": { "errno": libc::ENOSYS },
                    "filter": enosys,
                }),
            ),
        ]);
        Ok(json!(filters))
    }
}

impl Arg {
    fn to_seccompiler(&self, pid: u32) -> anyhow::Result<Value> {
        let width = match self.width {
            Width::Dword => "dword",
            Width::Qword => "qword",
        };
        let op = match self.op {
            Op::Eq => json!("eq"),
            Op::Ne => json!("ne"),
            Op::Ge => json!("ge"),
            Op::Gt => json!("gt"),
            Op::Le => json!("le"),
            Op::Lt => json!("lt"),
            Op::MaskedEq => {
                let mask = self
                    .mask
                    .as_ref()
                    .ok_or_else(|| anyhow!("masked_eq without a mask"))?
                    .resolve(pid)?;
                json!({ "masked_eq": mask })
            }
        };
        Ok(json!({
            "index": self.index,
            "type": width,
            "op": op,
            "val": self.val.resolve(pid)?,
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::{Command, Output};

    /// Run `confine::tests::child_entry` in a fresh copy of this test binary, which then
    /// runs the child function named `name` (see `confine::tests`).
    pub(crate) fn run_child(name: &str) -> Output {
        run_child_env(name, &[])
    }

    pub(crate) fn run_child_env(name: &str, env: &[(&str, &str)]) -> Output {
        let exe = std::env::current_exe().expect("test binary");
        let mut cmd = Command::new(exe);
        cmd.args([
            "--exact",
            "confine::tests::child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(crate::confine::tests::CHILD_ENV, name)
        .env_remove(MODE_ENV);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("running the test binary")
    }

    #[test]
    fn policy_compiles() {
        for mismatch in [Mismatch::KillProcess, Mismatch::Log] {
            let filters = compile(mismatch, 1234).expect("policy compiles");
            assert!(!filters.allow.is_empty() && !filters.enosys.is_empty());
        }
        let policy = Policy::parse(POLICY_JSON).expect("parse");
        eprintln!("seccomp policy: {} syscalls", policy.allow.len());
        assert!(
            policy.allow.len() < 100,
            "the allowlist grew past 100 syscalls"
        );
    }

    fn policy_with(rules: &str) -> String {
        format!(r#"{{ "about": "t", "allow": [ {rules} ], "enosys": [] }}"#)
    }

    #[test]
    fn duplicates_and_missing_reasons_are_refused() {
        let dup =
            policy_with(r#"{ "syscall": "read", "why": "a" }, { "syscall": "read", "why": "b" }"#);
        let e = Policy::parse(&dup).expect_err("duplicate");
        assert!(e.to_string().contains("listed twice"), "{e}");

        let no_why = policy_with(r#"{ "syscall": "read", "why": " " }"#);
        assert!(Policy::parse(&no_why).is_err());

        let missing = policy_with(r#"{ "syscall": "read" }"#);
        assert!(Policy::parse(&missing).is_err());

        let unknown_field = policy_with(r#"{ "syscall": "read", "why": "a", "comment": "x" }"#);
        assert!(Policy::parse(&unknown_field).is_err());

        let same_pattern = policy_with(
            r#"{ "syscall": "prctl", "why": "a", "only": [
                { "why": "x", "args": [ { "index": 0, "type": "dword", "op": "eq", "val": 15 } ] },
                { "why": "y", "args": [ { "index": 0, "type": "dword", "op": "eq", "val": 15 } ] } ] }"#,
        );
        let e = Policy::parse(&same_pattern).expect_err("same pattern");
        assert!(e.to_string().contains("repeats"), "{e}");
    }

    #[test]
    fn unknown_syscalls_are_refused() {
        let text = policy_with(r#"{ "syscall": "no_such_syscall", "why": "a" }"#);
        let policy = Policy::parse(&text).expect("parses");
        let json = policy
            .to_seccompiler(Mismatch::KillProcess, 1)
            .expect("json");
        let e = seccompiler::compile_from_json(json.to_string().as_bytes(), TargetArch::x86_64)
            .expect_err("unknown name");
        assert!(e.to_string().contains("no_such_syscall"), "{e}");
    }

    #[test]
    fn values_resolve() {
        assert_eq!(Number::Int(7).resolve(1).expect("int"), 7);
        assert_eq!(
            Number::Text("0xae00".into()).resolve(1).expect("hex"),
            0xae00
        );
        assert_eq!(
            Number::Text("self_pid".into()).resolve(42).expect("pid"),
            42
        );
        assert!(Number::Text("12".into()).resolve(1).is_err());
    }

    #[test]
    fn mode_values() {
        assert_eq!(Mismatch::parse("").expect("unset"), Mismatch::KillProcess);
        assert_eq!(
            Mismatch::parse("kill").expect("kill"),
            Mismatch::KillProcess
        );
        assert_eq!(Mismatch::parse("log").expect("log"), Mismatch::Log);
        assert!(Mismatch::parse("off").is_err());
    }

    /// Child: install the policy; threads, kicks and allowed ioctls work; then make the
    /// syscall named by `NV_FORBIDDEN`, which must kill the process.
    pub(crate) fn child_filtered() {
        install().expect("install");
        // A thread: clone3 → ENOSYS → clone with thread flags.
        let t = std::thread::spawn(|| 7);
        assert_eq!(t.join().expect("thread"), 7);
        // A kick-style signal to ourselves (tgkill on our own pid), ignored.
        // SAFETY: SIG_IGN for an unused real-time signal, then pthread_kill of ourselves.
        unsafe {
            libc::signal(libc::SIGRTMIN() + 5, libc::SIG_IGN);
            assert_eq!(
                libc::pthread_kill(libc::pthread_self(), libc::SIGRTMIN() + 5),
                0
            );
        }
        // An allowed ioctl on a non-tty: ENOTTY, not death.
        // SAFETY: TCGETS into a zeroed termios.
        let rc = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            libc::ioctl(-1, libc::TCGETS, &mut t)
        };
        assert_eq!(rc, -1);
        eprintln!("allowed calls work");
        let forbidden = std::env::var("NV_FORBIDDEN").unwrap_or_default();
        // SAFETY: each call has valid (or deliberately harmless) arguments; a kill is
        // the expected outcome.
        let rc = unsafe {
            match forbidden.as_str() {
                "socket" => libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0) as i64,
                "ptrace" => libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0),
                "fork" => libc::fork() as i64,
                "exec_mmap" => {
                    let p = libc::mmap(
                        std::ptr::null_mut(),
                        4096,
                        libc::PROT_READ | libc::PROT_EXEC,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    );
                    p as i64
                }
                "tiocsti" => libc::ioctl(0, libc::TIOCSTI, c"x".as_ptr()) as i64,
                "personality" => libc::personality(0xffff_ffff) as i64,
                "kill_other" => libc::syscall(libc::SYS_tgkill, 1, 1, 0),
                _ => 0,
            }
        };
        eprintln!("forbidden call {forbidden:?} returned {rc}");
    }

    fn expect_sigsys(forbidden: &str) {
        let out = run_child_env("seccomp", &[("NV_FORBIDDEN", forbidden)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("allowed calls work"),
            "{forbidden}: {stderr}"
        );
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSYS),
            "{forbidden}: {:?}\n{stderr}",
            out.status
        );
    }

    #[test]
    fn forbidden_syscalls_kill_the_process() {
        for forbidden in [
            "socket",
            "ptrace",
            "fork",
            "exec_mmap",
            "tiocsti",
            "kill_other",
            "personality",
        ] {
            expect_sigsys(forbidden);
        }
    }

    /// The sentry's debug hook (`syscalls::debug`) proves that a sentry breaking the
    /// policy kills its sandbox; that only holds while the host syscall it makes stays
    /// out of the policy.
    #[test]
    fn the_debug_hooks_host_syscall_is_not_allowed() {
        let name = sentry::syscalls::debug::FORBIDDEN_HOST_SYSCALL;
        let policy = Policy::parse(POLICY_JSON).expect("parse");
        assert!(
            policy.allow.iter().all(|r| r.syscall != name),
            "seccomp_policy.json allows {name}, which the debug hook relies on being forbidden"
        );
        // A real syscall name (a typo would make the check above pass vacuously).
        let text = policy_with(&format!(r#"{{ "syscall": "{name}", "why": "t" }}"#));
        let json = Policy::parse(&text)
            .expect("parses")
            .to_seccompiler(Mismatch::KillProcess, 1)
            .expect("json");
        seccompiler::compile_from_json(json.to_string().as_bytes(), TargetArch::x86_64)
            .expect("a syscall seccompiler knows");
    }

    #[test]
    fn log_mode_lets_forbidden_syscalls_through() {
        let out = run_child_env("seccomp", &[("NV_FORBIDDEN", "socket"), (MODE_ENV, "log")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{:?}\n{stderr}", out.status);
        assert!(
            stderr.contains("forbidden call \"socket\" returned"),
            "{stderr}"
        );
    }
}
