//! Builds the guest vDSO (`src/vdso/vdso.c`) into `$OUT_DIR/vdso.so`, which
//! `src/vdso/image.rs` embeds with `include_bytes!`.
//!
//! Why a C compiler at build time: the vDSO is a real ELF shared object with a dynamic
//! symbol table, GNU and SysV hash tables and symbol versions, which glibc's ld.so and
//! static glibc both parse. `gcc` + `ld` produce all of that correctly from a 200-line C
//! file, a version script and a linker script; writing those tables by hand in Rust would
//! be more code and more ways to be subtly wrong. gcc is on every machine that builds us
//! (the guest tests need it anyway). `$CC` overrides the compiler.

use std::path::PathBuf;
use std::process::Command;

const SOURCES: [&str; 4] = [
    "src/vdso/vdso.c",
    "src/vdso/vvar.h",
    "src/vdso/vdso.map",
    "src/vdso/vdso.lds",
];

fn main() {
    for src in SOURCES {
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cc = std::env::var_os("CC").unwrap_or_else(|| "gcc".into());
    let target = out.join("vdso.so");
    let status = Command::new(&cc)
        .args([
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fPIC",
            "-shared",
            "-nostdlib",
            "-ffreestanding",
            "-fno-builtin",
            "-fno-stack-protector",
            "-fcf-protection=none",
            // Unwind tables stay, so debuggers and profilers can walk through the vDSO.
            "-fasynchronous-unwind-tables",
            "-Wl,--hash-style=both",
            "-Wl,-soname,linux-vdso.so.1",
            "-Wl,--version-script=src/vdso/vdso.map",
            "-Wl,-T,src/vdso/vdso.lds",
            "-Wl,-z,max-page-size=4096",
            "-Wl,-z,noexecstack",
            "-Wl,--no-undefined",
            "-Wl,--eh-frame-hdr",
            "-Wl,--build-id=none",
            "-Wl,--strip-all",
            "-o",
        ])
        .arg(&target)
        .arg("src/vdso/vdso.c")
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "running {} to build the guest vDSO: {e} (install gcc, or set CC)",
                cc.to_string_lossy()
            )
        });
    assert!(
        status.success(),
        "{} failed to build the guest vDSO (src/vdso/vdso.c)",
        cc.to_string_lossy()
    );
}
