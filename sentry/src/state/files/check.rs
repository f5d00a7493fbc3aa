//! Checks of decoded names, paths and flags before they reach the file system. Each
//! names the object it is about (`what`) in its error, and none trusts a length.

use super::super::StateError;
use crate::vfs::path::{NAME_MAX, PATH_MAX};

/// The longest path kept for display (/proc/self/fd) or as a working directory: a guest
/// can make trees deeper than PATH_MAX with relative paths, so this is more generous.
pub const MAX_SHOWN_PATH: usize = 64 * PATH_MAX;

fn bad(what: &str, why: impl std::fmt::Display) -> StateError {
    StateError::invalid(format!("{what}: {why}"))
}

fn shown(b: &[u8]) -> String {
    let cut = &b[..b.len().min(80)];
    String::from_utf8_lossy(cut).into_owned()
}

/// A directory entry's name: 1 to NAME_MAX bytes, no "/" or NUL, not "." or "..".
pub fn entry_name(what: &str, name: &[u8]) -> Result<(), StateError> {
    if name.is_empty() || name.len() > NAME_MAX {
        return Err(bad(what, format!("a name of {} bytes", name.len())));
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(bad(
            what,
            format!("the name {:?} has a / or NUL", shown(name)),
        ));
    }
    if name == b"." || name == b".." {
        return Err(bad(what, "an entry named . or .."));
    }
    Ok(())
}

/// A name as getdents reports it ("." and ".." included).
pub fn listed_name(what: &str, name: &[u8]) -> Result<(), StateError> {
    if name == b"." || name == b".." {
        return Ok(());
    }
    entry_name(what, name)
}

/// A path relative to a host root: "" (the root itself) or names joined by "/".
pub fn rel_path(what: &str, rel: &[u8]) -> Result<(), StateError> {
    if rel.len() >= PATH_MAX {
        return Err(bad(what, format!("a host path of {} bytes", rel.len())));
    }
    if rel.is_empty() {
        return Ok(());
    }
    for name in rel.split(|b| *b == b'/') {
        entry_name(what, name)?;
    }
    Ok(())
}

/// An absolute, normalized guest path ("/", or "/" followed by names joined by "/").
pub fn abs_path(what: &str, p: &[u8]) -> Result<(), StateError> {
    if p.len() > MAX_SHOWN_PATH {
        return Err(bad(what, format!("a path of {} bytes", p.len())));
    }
    match p.strip_prefix(b"/") {
        None => Err(bad(
            what,
            format!("the path {:?} is not absolute", shown(p)),
        )),
        Some(b"") => Ok(()),
        Some(rest) => rest
            .split(|b| *b == b'/')
            .try_for_each(|n| entry_name(what, n)),
    }
}

/// A path kept to show the guest (what /proc/self/fd shows): no NUL, not too long.
pub fn shown_path(what: &str, p: &[u8]) -> Result<(), StateError> {
    if p.len() > MAX_SHOWN_PATH || p.contains(&0) {
        return Err(bad(what, format!("the path {:?}", shown(p))));
    }
    Ok(())
}

/// A symbolic link's text: 1 to PATH_MAX - 1 bytes, no NUL.
pub fn link_target(what: &str, t: &[u8]) -> Result<(), StateError> {
    if t.is_empty() || t.len() >= PATH_MAX || t.contains(&0) {
        return Err(bad(what, format!("a link to {:?}", shown(t))));
    }
    Ok(())
}

/// A description's status flags: a real access mode (O_RDONLY, O_WRONLY or O_RDWR).
pub fn status_flags(what: &str, flags: u32) -> Result<(), StateError> {
    if flags & libc::O_ACCMODE as u32 == libc::O_ACCMODE as u32 {
        return Err(bad(what, format!("status flags {flags:#o}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert!(entry_name("x", b"a").is_ok());
        for n in [&b""[..], b".", b"..", b"a/b", b"a\0"] {
            assert!(entry_name("x", n).is_err(), "{n:?}");
        }
        assert!(entry_name("x", &[b'a'; NAME_MAX + 1]).is_err());
        assert!(listed_name("x", b"..").is_ok());
        assert!(rel_path("x", b"").is_ok());
        assert!(rel_path("x", b"usr/lib/libc.so").is_ok());
        for r in [&b"/usr"[..], b"usr/", b"a//b", b"a/../b"] {
            assert!(rel_path("x", r).is_err(), "{r:?}");
        }
        assert!(abs_path("x", b"/").is_ok());
        assert!(abs_path("x", b"/a/b").is_ok());
        for p in [&b""[..], b"a", b"/a/", b"//a", b"/a/./b"] {
            assert!(abs_path("x", p).is_err(), "{p:?}");
        }
        assert!(link_target("x", b"../etc").is_ok());
        assert!(link_target("x", b"").is_err());
        assert!(status_flags("x", libc::O_RDWR as u32).is_ok());
        assert!(status_flags("x", 3).is_err());
    }
}
