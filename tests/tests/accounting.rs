//! CPU time accounting: the `cputime` guest program (getrusage, times, CPU clocks and
//! /proc/self/stat after burning CPU in threads and a child) natively and sandboxed.

use nanovisor_tests::check_guest;

#[test]
fn cpu_time_of_threads_and_children() {
    check_guest("cputime", &[], 0);
}
