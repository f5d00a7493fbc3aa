//! The guest vDSO: clock calls answered inside the guest. The `vdso` guest program,
//! static (glibc finds the vDSO through AT_SYSINFO_EHDR itself) and dynamic (ld.so
//! adds it to the link map), natively and sandboxed. Its cost is measured by bench/run.sh.

use nanovisor_tests::{check_guest, check_program, guest_bin_dynamic};

#[test]
fn vdso_static() {
    check_guest("vdso", &[], 0);
}

#[test]
fn vdso_dynamic() {
    check_program(&guest_bin_dynamic("vdso", &[]), &[], 0);
}
