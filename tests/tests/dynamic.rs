//! Dynamically linked programs: the loader's PT_INTERP path (ld.so loaded beside the
//! program), the file mappings ld.so makes, and mremap/msync/mincore. Each program runs
//! natively and under `runsc do --rootfs /` and must print the same bytes.

use std::path::{Path, PathBuf};
use std::process::Command;

use nanovisor_tests::{
    check_guest, check_program, guest_bin, guest_bin_dynamic, run_sandboxed, target_dir,
    workspace_root,
};

/// Links tests/guest/dynamic.c with `interp` as its PT_INTERP, into `target/guest-bin/`.
fn with_interpreter(tag: &str, interp: &Path) -> PathBuf {
    let out = target_dir()
        .join("guest-bin")
        .join(format!("interp-{tag}-{}", std::process::id()));
    let status = Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&out)
        .arg(workspace_root().join("tests/guest/dynamic.c"))
        .arg(format!("-Wl,--dynamic-linker={}", interp.display()))
        .status()
        .expect("running gcc");
    assert!(status.success(), "gcc with --dynamic-linker failed");
    out
}

/// printf, malloc (brk, mmap, realloc through mremap), getenv and dlopen("libm.so.6")
/// from a program linked against the host's glibc.
#[test]
fn dynamic_glibc_program() {
    let prog = guest_bin_dynamic("dynamic", &["-ldl"]);
    let out = check_program(&prog, &[], 0);
    assert!(
        out.stdout_str().contains("cos(1)=0.540302306"),
        "{}",
        out.stdout_str()
    );
}

/// A dynamic program given arguments (argv reaches main through ld.so).
#[test]
fn dynamic_glibc_program_with_arguments() {
    let prog = guest_bin_dynamic("dynamic", &["-ldl"]);
    check_program(&prog, &["one", "two"], 0);
}

/// The host's own dynamically linked binaries.
#[test]
fn host_true() {
    check_program(Path::new("/bin/true"), &[], 0);
}

#[test]
fn host_false() {
    check_program(Path::new("/bin/false"), &[], 1);
}

#[test]
fn host_echo() {
    let out = check_program(Path::new("/bin/echo"), &["hi"], 0);
    assert_eq!(out.stdout_str(), "hi\n");
}

/// ld.so run as a program, naming the program to load (an ET_DYN without PT_INTERP).
#[test]
fn interpreter_run_directly() {
    let ld = Path::new("/lib64/ld-linux-x86-64.so.2");
    if !ld.exists() {
        eprintln!("skipped: no {}", ld.display());
        return;
    }
    check_program(ld, &["/bin/echo", "via ld.so"], 0);
}

/// File mappings as ld.so makes them, mremap, msync and mincore (a static program).
#[test]
fn mapping() {
    check_guest("mapping", &[&format!("-{}", std::process::id())], 0);
}

/// An interpreter that is missing, is not a shared object, or wants an interpreter of its
/// own is refused before anything runs, with a message that names it. (Linux would load
/// the latter two and crash in them; Linux's errno for the first is ENOENT.)
#[test]
fn unusable_interpreters_are_refused() {
    let dynamic = guest_bin_dynamic("dynamic", &["-ldl"]);
    let static_prog = guest_bin("time");
    let cases = [
        (
            "missing",
            PathBuf::from("/nonexistent/ld.so"),
            "opening the ELF interpreter",
        ),
        ("static", static_prog, "not a shared object"),
        ("nested", dynamic, "names an interpreter of its own"),
    ];
    for (tag, interp, message) in cases {
        let prog = with_interpreter(tag, &interp);
        let out = run_sandboxed(Path::new("/"), &prog, &[]);
        let _ = std::fs::remove_file(&prog);
        assert!(
            out.status == 126 || out.status == 127,
            "{tag}: status {}",
            out.status
        );
        assert!(out.stdout.is_empty(), "{tag}: the program ran");
        let err = out.stderr_str();
        assert!(
            err.contains(message) && err.contains(&*interp.to_string_lossy()),
            "{tag}: {err}"
        );
    }
}
