//! `#!` scripts: execve of a script runs its interpreter (Linux's binfmt_script), from a
//! shell inside the sandbox and as the sandbox's first command, compared with the same
//! scripts run natively. npm (`#!/usr/bin/env node`) is the real-world case.

use std::path::{Path, PathBuf};

use nanovisor_tests::{assert_same_outcome, run_native, run_sandboxed};

/// A directory of executable scripts for this test run (the sandbox's root is the host's
/// `/`, so both runs see them at the same paths).
struct Scripts(PathBuf);

impl Scripts {
    fn new(tag: &str) -> Scripts {
        let dir = std::env::temp_dir().join(format!("nv-scripts-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("script dir");
        Scripts(dir)
    }

    /// Writes an executable script. Through a shell, not from this process: a file this
    /// process held open for writing could be inherited by a child another test is
    /// spawning at that moment, and executing it would fail with ETXTBSY until that
    /// child's execve closed it.
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        let path = path.to_str().expect("UTF-8 path").to_owned();
        let status = std::process::Command::new("/bin/sh")
            .args([
                "-c",
                "printf '%s' \"$1\" > \"$2\" && chmod 755 \"$2\"",
                "sh",
                text,
            ])
            .arg(&path)
            .status()
            .expect("writing a script");
        assert!(status.success(), "writing {path}");
        path
    }
}

impl Drop for Scripts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn both(what: &str, prog: &str, args: &[&str]) {
    let native = run_native(Path::new(prog), args);
    let sandboxed = run_sandboxed(Path::new("/"), Path::new(prog), args);
    assert_same_outcome(what, &native, &sandboxed);
}

#[test]
fn a_script_runs_its_interpreter_with_its_argument() {
    let s = Scripts::new("args");
    let run = s.write(
        "run.sh",
        "#!/bin/sh -e\necho \"argv: $0 $*\"\necho \"-e is on: $-\" | grep -c e\n",
    );
    // As the sandbox's first command, and through a shell's execve.
    both("a script as the command", &run, &["a", "b c"]);
    both(
        "a script from a shell",
        "/bin/sh",
        &["-c", &format!("{run} x y; echo status $?")],
    );
}

#[test]
fn a_script_may_be_another_scripts_interpreter() {
    let s = Scripts::new("nested");
    let wrap = s.write("wrap", "#!/bin/sh\necho \"wrap: $*\"\n");
    let outer = s.write("outer", &format!("#!{wrap} extra\nnot shell\n"));
    both("a script interpreting a script", &outer, &["x"]);
}

#[test]
fn unusable_interpreters_fail_as_on_linux() {
    let s = Scripts::new("bad");
    let missing = s.write("missing", "#!/nonexistent/interpreter\n");
    let empty = s.write("empty", "#!\n");
    let looping = s.0.join("loop").to_str().expect("UTF-8").to_owned();
    s.write("loop", &format!("#!{looping}\n"));
    // The shell reports each failure and its status (127: not found; 126: not runnable).
    for (what, script) in [("missing", &missing), ("empty", &empty), ("loop", &looping)] {
        both(
            what,
            "/bin/sh",
            &[
                "-c",
                &format!("{script} 2>/dev/null; echo {what} status $?"),
            ],
        );
    }
    // As the first command: runsc names the interpreter and exits 127 like a shell.
    let out = run_sandboxed(Path::new("/"), Path::new(&missing), &[]);
    assert_eq!(out.status, 127, "{out:?}");
    assert!(
        out.stderr_str().contains("/nonexistent/interpreter"),
        "{}",
        out.stderr_str()
    );
}

#[test]
fn npm_runs() {
    // /usr/bin/npm is a symlink to a `#!/usr/bin/env node` script.
    both("npm --version", "/usr/bin/npm", &["--version"]);
}
