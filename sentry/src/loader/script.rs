//! `#!` scripts (Linux's binfmt_script): a file that starts with `#!interpreter [arg]`
//! is run as `interpreter [arg] path argv[1..]`.

use crate::abi::Errno;

/// Bytes of the file's start that are looked at (Linux's BINPRM_BUF_SIZE): the whole
/// `#!` line must fit.
pub const HEAD_LEN: usize = 256;

/// A script's interpreter line.
#[derive(Debug, PartialEq, Eq)]
pub struct Shebang {
    pub interpreter: Vec<u8>,
    /// Everything after the interpreter on the line, as one argument (Linux does not
    /// split it).
    pub arg: Option<Vec<u8>>,
}

impl Shebang {
    /// The interpreter's argv for a script run as `path` with `argv`: the script's own
    /// argv[0] gives way to its path.
    pub fn argv(&self, path: &[u8], argv: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out = vec![self.interpreter.clone()];
        out.extend(self.arg.clone());
        out.push(path.to_vec());
        out.extend(argv.iter().skip(1).cloned());
        out
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The interpreter line of a file whose first bytes are `head` (at most [`HEAD_LEN`]):
/// None if it is not a script; ENOEXEC if the line names no interpreter or does not fit.
pub fn parse(head: &[u8]) -> Result<Option<Shebang>, Errno> {
    let head = &head[..head.len().min(HEAD_LEN)];
    let Some(line) = head.strip_prefix(b"#!") else {
        return Ok(None);
    };
    let line = match line.iter().position(|b| *b == b'\n') {
        Some(end) => &line[..end],
        // A file shorter than the buffer: its one line is the line.
        None if head.len() < HEAD_LEN => line,
        None => {
            // The line goes on past the buffer: usable only if the interpreter's name
            // visibly ends within it (Linux 5.0's rule); the argument is what fits.
            let start = line
                .iter()
                .position(|b| !is_blank(*b))
                .ok_or(Errno::ENOEXEC)?;
            if !line[start..].iter().any(|b| is_blank(*b) || *b == 0) {
                return Err(Errno::ENOEXEC);
            }
            line
        }
    };
    let line = match line.iter().rposition(|b| !is_blank(*b)) {
        Some(last) => &line[..=last],
        None => return Err(Errno::ENOEXEC),
    };
    let start = line
        .iter()
        .position(|b| !is_blank(*b))
        .ok_or(Errno::ENOEXEC)?;
    let rest = &line[start..];
    let name_end = rest
        .iter()
        .position(|b| is_blank(*b) || *b == 0)
        .unwrap_or(rest.len());
    let interpreter = rest[..name_end].to_vec();
    let arg = rest[name_end..]
        .iter()
        .position(|b| !is_blank(*b))
        .map(|s| &rest[name_end + s..])
        // A NUL ends the argument as it would end a C string.
        .map(|a| a.split(|b| *b == 0).next().unwrap_or(&[]).to_vec())
        .filter(|a| !a.is_empty());
    if interpreter.is_empty() {
        return Err(Errno::ENOEXEC);
    }
    Ok(Some(Shebang { interpreter, arg }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shebang(i: &str, a: Option<&str>) -> Option<Shebang> {
        Some(Shebang {
            interpreter: i.as_bytes().to_vec(),
            arg: a.map(|a| a.as_bytes().to_vec()),
        })
    }

    #[test]
    fn interpreter_and_one_argument() {
        assert_eq!(parse(b"#!/bin/sh\necho"), Ok(shebang("/bin/sh", None)));
        assert_eq!(
            parse(b"#!/usr/bin/env node\nrequire('x')"),
            Ok(shebang("/usr/bin/env", Some("node")))
        );
        // Blanks around, and the rest of the line kept whole as one argument.
        assert_eq!(
            parse(b"#! \t/usr/bin/env  -S node --flag  \t\n"),
            Ok(shebang("/usr/bin/env", Some("-S node --flag")))
        );
        assert_eq!(parse(b"#!/bin/sh"), Ok(shebang("/bin/sh", None)));
        assert_eq!(parse(b"#!/bin/sh\r\n"), Ok(shebang("/bin/sh\r", None)));
    }

    #[test]
    fn not_a_script_or_no_interpreter() {
        assert_eq!(parse(b"\x7fELF"), Ok(None));
        assert_eq!(parse(b""), Ok(None));
        assert_eq!(parse(b"#"), Ok(None));
        assert_eq!(parse(b"#!\n"), Err(Errno::ENOEXEC));
        assert_eq!(parse(b"#!   \t\n"), Err(Errno::ENOEXEC));
    }

    #[test]
    fn a_line_longer_than_the_buffer() {
        // The interpreter's name runs to the end of the buffer: it may be cut short.
        let mut long = b"#!/".to_vec();
        long.resize(HEAD_LEN + 10, b'a');
        assert_eq!(parse(&long), Err(Errno::ENOEXEC));
        // The name ends within it: the argument is what fits.
        let mut cut = b"#!/bin/sh -x".to_vec();
        cut.resize(HEAD_LEN + 10, b'y');
        let s = parse(&cut).expect("parsed").expect("a script");
        assert_eq!(s.interpreter, b"/bin/sh");
        assert_eq!(s.arg.map(|a| a.len()), Some(HEAD_LEN - 10));
    }

    #[test]
    fn argv_puts_the_script_path_in_place_of_argv0() {
        let s = Shebang {
            interpreter: b"/bin/sh".to_vec(),
            arg: Some(b"-e".to_vec()),
        };
        let argv = vec![b"run".to_vec(), b"a".to_vec(), b"b".to_vec()];
        assert_eq!(
            s.argv(b"/app/run.sh", &argv),
            vec![
                b"/bin/sh".to_vec(),
                b"-e".to_vec(),
                b"/app/run.sh".to_vec(),
                b"a".to_vec(),
                b"b".to_vec()
            ]
        );
        assert_eq!(s.argv(b"x", &[]).len(), 3);
    }
}
