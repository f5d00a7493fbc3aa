//! AF_UNIX sockets (`tests/guest/unix_sockets.c`): the same program natively and under
//! `runsc do`, byte for byte.

#[test]
fn unix_sockets_match_linux() {
    nanovisor_tests::check_guest("unix_sockets", &[], 0);
}
