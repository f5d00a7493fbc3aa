//! CRI's list filters: an id (or a unique prefix of one, as containerd matches), a state, a
//! pod, and a label selector that every listed label must match exactly.

use std::collections::HashMap;

pub fn id_matches(filter: &str, id: &str) -> bool {
    filter.is_empty() || id.starts_with(filter)
}

pub fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The one id in `ids` that `prefix` names: exact, else a unique prefix.
pub fn resolve<'a>(prefix: &str, ids: impl Iterator<Item = &'a String>) -> Option<String> {
    if prefix.is_empty() {
        return None;
    }
    let mut found = None;
    for id in ids {
        if id == prefix {
            return Some(id.clone());
        }
        if id.starts_with(prefix) {
            if found.is_some() {
                return None;
            }
            found = Some(id.clone());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_labels() {
        assert!(id_matches("", "abc"));
        assert!(id_matches("ab", "abc"));
        assert!(!id_matches("b", "abc"));
        let labels = HashMap::from([
            ("app".to_string(), "web".to_string()),
            ("x".into(), "y".into()),
        ]);
        assert!(labels_match(&HashMap::new(), &labels));
        assert!(labels_match(
            &HashMap::from([("app".into(), "web".into())]),
            &labels
        ));
        assert!(!labels_match(
            &HashMap::from([("app".into(), "db".into())]),
            &labels
        ));
        assert!(!labels_match(
            &HashMap::from([("z".into(), "web".into())]),
            &labels
        ));
        let ids = ["abc1".to_string(), "abd2".to_string()];
        assert_eq!(resolve("abc", ids.iter()), Some("abc1".into()));
        assert_eq!(resolve("ab", ids.iter()), None);
        assert_eq!(resolve("abd2", ids.iter()), Some("abd2".into()));
        assert_eq!(resolve("", ids.iter()), None);
    }
}
