//! DNS name patterns of the ACL (`api.example.test`, `*.example.test`, `*`): their
//! validation, and matching against the names the guest asks for, case-insensitively and
//! without allocating.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::rule::ParseVisitor;

/// Longest name, in characters, without the trailing dot (RFC 1035 §2.3.4, as text).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// A pattern in a `dns` or `to_fqdn` rule. Stored in lower case, without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NamePattern {
    /// `*`: every name.
    Any,
    /// An exact name: `api.example.test`.
    Exact(Box<str>),
    /// `*.suffix`: every name with at least one more label in front of the suffix, so
    /// `*.example.test` matches `a.example.test` and `b.a.example.test` but not
    /// `example.test`. Holds the suffix (`example.test`).
    Suffix(Box<str>),
}

impl NamePattern {
    /// Parses and validates a pattern: labels of 1-63 characters from `[a-z0-9-_]` (any
    /// case), at most 253 characters in all, `*` only as the whole first label; one
    /// trailing dot is ignored.
    pub fn parse(text: &str) -> Result<NamePattern, String> {
        let bad = |why: &str| format!("invalid name pattern {text:?}: {why}");
        let name = trim_dot(text);
        if name == "*" {
            return Ok(NamePattern::Any);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(bad(&format!("longer than {MAX_NAME_LEN} characters")));
        }
        let (wildcard, rest) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, name),
        };
        validate_name(rest).map_err(|why| bad(&why))?;
        let lower = rest.to_ascii_lowercase().into_boxed_str();
        Ok(if wildcard {
            NamePattern::Suffix(lower)
        } else {
            NamePattern::Exact(lower)
        })
    }

    /// Whether `name` (any case, with or without one trailing dot) matches.
    pub fn matches(&self, name: &str) -> bool {
        let name = trim_dot(name).as_bytes();
        match self {
            NamePattern::Any => true,
            NamePattern::Exact(exact) => name.eq_ignore_ascii_case(exact.as_bytes()),
            NamePattern::Suffix(suffix) => {
                let suffix = suffix.as_bytes();
                // At least one character and a dot in front of the suffix.
                name.len() > suffix.len() + 1
                    && name[name.len() - suffix.len() - 1] == b'.'
                    && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamePattern::Any => f.write_str("*"),
            NamePattern::Exact(name) => f.write_str(name),
            NamePattern::Suffix(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

impl std::str::FromStr for NamePattern {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        NamePattern::parse(text)
    }
}

impl Serialize for NamePattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NamePattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParseVisitor::new(
            "a DNS name or \"*.suffix\" pattern",
            NamePattern::parse,
        ))
    }
}

/// `name` without one trailing dot.
pub fn trim_dot(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// Checks the labels of a name that has no trailing dot and no wildcard.
fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".to_string());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label".to_string());
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(format!(
                "label {label:?} is longer than {MAX_LABEL_LEN} characters"
            ));
        }
        if label.contains('*') {
            return Err(
                "`*` is only allowed as the whole first label (\"*.example.test\") or alone"
                    .to_string(),
            );
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "character {c:?} is not allowed (labels use a-z, 0-9, '-' and '_')"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(text: &str) -> NamePattern {
        NamePattern::parse(text).expect("valid")
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let p = pat("*.example.test");
        assert!(p.matches("a.example.test"));
        assert!(p.matches("b.a.example.test"));
        assert!(p.matches("A.Example.TEST."));
        assert!(!p.matches("example.test"));
        assert!(!p.matches("example.test."));
        assert!(!p.matches(".example.test"));
        assert!(!p.matches("example.test.evil"));
        assert!(!p.matches("aexample.test"));
        assert!(!p.matches(""));
    }

    #[test]
    fn exact_ignores_case_and_trailing_dot() {
        let p = pat("API.example.test.");
        assert_eq!(p, NamePattern::Exact("api.example.test".into()));
        assert!(p.matches("api.example.test"));
        assert!(p.matches("Api.Example.Test."));
        assert!(!p.matches("x.api.example.test"));
        assert!(!p.matches("api.example.tes"));
    }

    #[test]
    fn star_matches_everything() {
        assert_eq!(pat("*"), NamePattern::Any);
        assert!(pat("*").matches("anything.at.all"));
        assert!(pat("*.").matches("x"));
    }

    #[test]
    fn non_ascii_names_do_not_panic() {
        let p = pat("*.example.test");
        assert!(!p.matches("é.example.tesé"));
        assert!(!p.matches("ééééééééééééé"));
        assert!(!pat("example.test").matches("éxample.test"));
    }

    #[test]
    fn invalid_patterns() {
        for (text, why) in [
            ("", "empty name"),
            ("a..b", "empty label"),
            ("*example.test", "only allowed as the whole first label"),
            ("a.*.test", "only allowed as the whole first label"),
            ("*.*.test", "only allowed as the whole first label"),
            ("a b.test", "character ' '"),
            ("*..", "empty name"),
        ] {
            let err = NamePattern::parse(text).expect_err("rejected");
            assert!(err.contains(why), "{text:?}: {err}");
        }
        let long_label = format!("{}.test", "a".repeat(64));
        assert!(NamePattern::parse(&long_label)
            .expect_err("rejected")
            .contains("longer than 63"));
        let long_name = ["abcdefghi"; 26].join(".");
        assert!(NamePattern::parse(&long_name)
            .expect_err("rejected")
            .contains("longer than 253"));
        assert!(NamePattern::parse("_srv._tcp.example.test").is_ok());
    }

    #[test]
    fn display_round_trips() {
        for text in ["*", "*.example.test", "a.example.test"] {
            assert_eq!(pat(text).to_string(), text);
        }
    }
}
