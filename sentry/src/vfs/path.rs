//! Pure path handling: limits, splitting into components, joining. No file system access.

use crate::abi::Errno;

/// Longest path a guest may pass, including the terminating NUL (Linux PATH_MAX).
pub const PATH_MAX: usize = 4096;
/// Longest single component (Linux NAME_MAX).
pub const NAME_MAX: usize = 255;
/// Symbolic links followed in one lookup before ELOOP (Linux MAXSYMLINKS).
pub const MAX_SYMLINKS: u32 = 40;

/// Check a guest path's length: ENOENT when empty, ENAMETOOLONG at PATH_MAX.
pub fn check(path: &[u8]) -> Result<(), Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if path.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

/// The non-empty components of `path`, in order; ENAMETOOLONG for one over NAME_MAX.
pub fn components(path: &[u8]) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    for c in path.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
        if c.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        out.push(c.to_vec());
    }
    Ok(out)
}

/// Whether the path ends with a slash after a component ("dir/", "a/."-style dots excluded).
pub fn has_trailing_slash(path: &[u8]) -> bool {
    path.len() > 1 && path.ends_with(b"/") && path.iter().any(|b| *b != b'/')
}

/// Whether a component is "." or "..".
pub fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

/// `dir` + "/" + `name` for sandbox paths ("/" + "a" = "/a").
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// A host-relative path (no leading slash, "" is the root) + `name`.
pub fn join_rel(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut p = dir.to_vec();
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// The absolute path of a stack of names from the root ("" for the root itself).
pub fn from_names<'a>(names: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut p = Vec::new();
    for n in names.filter(|n| !n.is_empty()) {
        p.push(b'/');
        p.extend_from_slice(n);
    }
    if p.is_empty() {
        p.push(b'/');
    }
    p
}

/// Lexically normalise an absolute path: collapse "//", ".", and ".." (which stops at "/").
/// Only for paths known to contain no symbolic links (the working directory).
pub fn normalize(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in path.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
        match c {
            b"." => {}
            b".." => {
                parts.pop();
            }
            _ => parts.push(c),
        }
    }
    from_names(parts.into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(check(b""), Err(Errno::ENOENT));
        assert_eq!(check(&[b'a'; PATH_MAX]), Err(Errno::ENAMETOOLONG));
        assert_eq!(check(&[b'a'; PATH_MAX - 1]), Ok(()));
        assert_eq!(components(&[b'a'; 256]), Err(Errno::ENAMETOOLONG));
        assert_eq!(components(&[b'a'; 255]).map(|c| c.len()), Ok(1));
    }

    #[test]
    fn splitting_and_joining() {
        assert_eq!(
            components(b"//a/./b//").ok(),
            Some(vec![b"a".to_vec(), b".".to_vec(), b"b".to_vec()])
        );
        assert!(has_trailing_slash(b"a/"));
        assert!(!has_trailing_slash(b"/"));
        assert!(!has_trailing_slash(b"a"));
        assert_eq!(join(b"/", b"x"), b"/x");
        assert_eq!(join(b"/a", b"x"), b"/a/x");
        assert_eq!(join_rel(b"", b"x"), b"x");
        assert_eq!(join_rel(b"a", b"x"), b"a/x");
    }

    #[test]
    fn normalising() {
        assert_eq!(normalize(b"/a/../../b/./c/"), b"/b/c");
        assert_eq!(normalize(b"/.."), b"/");
        assert_eq!(normalize(b"//"), b"/");
    }
}
