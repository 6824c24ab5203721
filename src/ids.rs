//! Names a request brings that end up in file names, git refs and logs — job ids, session ids, branch names —
//! parsed once, where the JSON is read. Holding one means it passed its rules; nothing downstream checks again,
//! and nothing downstream can be handed an unchecked string where one of these is asked for.

use std::{fmt, ops::Deref};

use serde::Deserialize;

/// serde reports these as `invalid value: …`, which the error mapping answers with 422 naming the field's path.
fn refused(what: &str) -> String {
    format!("invalid value: {what}")
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $check:path, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(raw: String) -> Result<Self, String> {
                if $check(&raw) { Ok($name(raw)) } else { Err(refused($what)) }
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }
    };
}

name_type!(
    /// A job's id: the client's idempotency key, also a folder name.
    JobId,
    is_safe_id,
    "must be 1-128 characters of letters, digits, '-', '_' or '.', not starting with '.'"
);

name_type!(
    /// A provider session's id (or a persistence session's): it names files in session stores and URLs.
    SessionId,
    is_safe_id,
    "must be 1-128 characters of letters, digits, '-', '_' or '.', not starting with '.'"
);

name_type!(
    /// A branch name git accepts that cannot be mistaken for an option or a refspec.
    BranchName,
    is_branch_name,
    "not a valid branch name"
);

impl JobId {
    /// A fresh id for a request that did not bring one.
    pub fn new_random() -> Self {
        JobId(uuid::Uuid::new_v4().to_string())
    }
}

/// Ids that end up in file names: no separators, no leading dot, bounded length.
fn is_safe_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && !value.starts_with('.')
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn is_branch_name(name: &str) -> bool {
    // Control characters first: git refuses them anyway, and libgit2's check cannot even be asked about a NUL
    // (the binding would panic turning the name into a C string).
    !name.chars().any(char::is_control)
        && !name.starts_with('-')
        && !name.contains(':')
        && !name.starts_with("refs/")
        && git2::Reference::is_valid_name(&format!("refs/heads/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_once_when_read() {
        assert!(JobId::try_from("job-1.a_b".to_string()).is_ok());
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(129)] {
            assert!(JobId::try_from(bad.to_string()).is_err(), "{bad:?}");
        }
        assert!(BranchName::try_from("agent/x".to_string()).is_ok());
        for bad in ["-x", "a..b", "x:y", "refs/heads/x", "", "a~1", "main\0x", "a\u{7f}b"] {
            assert!(BranchName::try_from(bad.to_string()).is_err(), "{bad:?}");
        }
        let err = serde_json::from_str::<BranchName>("\"a\\u0000b\"")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid value"), "{err}");
    }
}
