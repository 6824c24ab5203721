//! Secret values and the redactor that keeps them out of everything the worker emits (docs/git.md).

use std::fmt;

/// Shorter secrets are refused at the edge: redacting them would mangle ordinary text.
pub const MIN_SECRET_LEN: usize = 8;

pub const REDACTED: &str = "[REDACTED]";

/// A value that must never be printed; `Debug` and `Display` show a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The credential strings inside a credentials file's JSON (Claude Code's `{"claudeAiOauth":{"accessToken",
/// "refreshToken"}}`, Codex's `{"OPENAI_API_KEY", "tokens":{"id_token","access_token","refresh_token"}}`): every
/// string under a key that names a token, key or secret, at any depth. They can show up in output on their own,
/// without the JSON around them.
pub fn tokens_in_json(value: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, named: bool, out: &mut Vec<String>) {
        match value {
            serde_json::Value::String(s) if named && s.len() >= MIN_SECRET_LEN => out.push(s.clone()),
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    let key = key.to_ascii_lowercase();
                    let named = ["token", "key", "secret"].iter().any(|word| key.contains(word));
                    walk(value, named, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, named, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, false, &mut out);
    out
}

/// Replaces every known secret in serialized event JSON. It runs at the one place every event passes through,
/// so nothing a provider prints, and no error text the worker builds, can carry a secret out.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// Raw forms and their JSON-escaped forms, longest first so that a secret containing another is replaced whole.
    /// Each searcher is built once per job, not once per event.
    needles: Vec<(String, memchr::memmem::Finder<'static>)>,
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles = Vec::new();
        for secret in secrets {
            if secret.len() < MIN_SECRET_LEN {
                continue;
            }
            needles.push(secret.to_string());
            // Inside JSON a secret with quotes, backslashes or control characters appears escaped.
            if let Ok(quoted) = serde_json::to_string(secret) {
                let escaped = &quoted[1..quoted.len() - 1];
                if escaped != secret {
                    needles.push(escaped.to_string());
                }
            }
        }
        needles.sort_by_key(|n: &String| std::cmp::Reverse(n.len()));
        needles.dedup();
        let needles = needles
            .into_iter()
            .map(|n| {
                let finder = memchr::memmem::Finder::new(n.as_bytes()).into_owned();
                (n, finder)
            })
            .collect();
        Redactor { needles }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Returns the input untouched (no allocation) in the common case that no secret occurs.
    pub fn redact<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let mut out = std::borrow::Cow::Borrowed(text);
        for (needle, finder) in &self.needles {
            if finder.find(out.as_bytes()).is_some() {
                out = std::borrow::Cow::Owned(out.replace(needle.as_str(), REDACTED));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("sk-ant-api03-canary");
        assert_eq!(format!("{s:?} {s}"), "[REDACTED] [REDACTED]");
    }

    #[test]
    fn redacts_raw_and_json_escaped_forms() {
        let r = Redactor::new(["tok\"en-12345", "plain-secret-1"]);
        let json = serde_json::to_string(&serde_json::json!({"a": "x tok\"en-12345 y plain-secret-1"})).unwrap();
        let out = r.redact(&json);
        assert!(!out.contains("en-12345") && !out.contains("plain-secret-1"), "{out}");
        assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
    }

    #[test]
    fn the_tokens_inside_credentials_files_are_found() {
        let claude = serde_json::json!({"claudeAiOauth": {"accessToken": "sk-ant-oat01-abcdefgh",
            "refreshToken": "sk-ant-ort01-abcdefgh", "expiresAt": 1, "scopes": ["user:inference"]}});
        assert_eq!(
            tokens_in_json(&claude),
            ["sk-ant-oat01-abcdefgh", "sk-ant-ort01-abcdefgh"]
        );
        let codex = serde_json::json!({"OPENAI_API_KEY": null, "tokens": {"id_token": "eyJhbGciOi.x.y",
            "access_token": "eyJhbGciOi.a.b", "account_id": "acct-123456789"}, "last_refresh": "2026-01-01"});
        let mut found = tokens_in_json(&codex);
        found.sort();
        assert_eq!(found, ["eyJhbGciOi.a.b", "eyJhbGciOi.x.y"]);
    }

    #[test]
    fn short_values_are_not_redacted_and_clean_text_is_borrowed() {
        let r = Redactor::new(["abc"]);
        assert!(r.is_empty());
        let r = Redactor::new(["long-enough-secret"]);
        assert!(matches!(r.redact("nothing here"), std::borrow::Cow::Borrowed(_)));
    }
}
