//! What providers share when they read their part of a request: a credential string long enough to be
//! redacted, `providerOptions` parsed into the provider's own struct with field-precise errors, and the checks
//! of option values that several CLIs take (a model name, tool lists).

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    error::ApiError,
    secret::{MIN_SECRET_LEN, Secret},
};

pub const CREDENTIAL_FIELD: &str = "codingAssistantAccessToken";
pub const OPTIONS_FIELD: &str = "providerOptions";
/// The option that holds MCP servers: taken by the providers that can run them, refused by name by the rest.
pub const MCP_SERVERS_FIELD: &str = "mcpServers";

/// A credential string, trimmed. Shorter ones are refused: they could not be redacted without mangling
/// ordinary output.
pub fn token(raw: &str) -> Result<Secret, ApiError> {
    let token = raw.trim();
    if token.len() < MIN_SECRET_LEN {
        return Err(ApiError::invalid(
            CREDENTIAL_FIELD,
            format!("{CREDENTIAL_FIELD} is too short to be a credential"),
        ));
    }
    Ok(Secret::new(token))
}

/// The credential of a provider that takes a string and nothing else.
pub fn token_only(value: Value) -> Result<Secret, ApiError> {
    match value {
        Value::String(raw) => token(&raw),
        _ => Err(not_a(&"a string")),
    }
}

/// A credential of the wrong JSON type; `expected` says what this provider takes.
pub fn not_a(expected: &dyn std::fmt::Display) -> ApiError {
    ApiError::InvalidJson {
        message: format!("{CREDENTIAL_FIELD} must be {expected}"),
        field: Some(CREDENTIAL_FIELD.into()),
    }
}

/// `providerOptions` as the provider's own struct (which denies unknown fields, so a typo or an option this CLI
/// cannot honour is refused by name instead of ignored). `mcpServers` is still there only when the provider did
/// not take it (`ProviderRequest::take_mcp_servers`): its CLI cannot run MCP servers.
pub fn options<T: DeserializeOwned + Default>(value: Option<Value>) -> Result<T, ApiError> {
    if value.as_ref().is_some_and(|v| v.get(MCP_SERVERS_FIELD).is_some()) {
        return Err(ApiError::invalid(
            option_field(MCP_SERVERS_FIELD),
            "this provider's CLI cannot run MCP servers",
        ));
    }
    match value {
        None | Some(Value::Null) => Ok(T::default()),
        Some(value) => serde_path_to_error::deserialize(value).map_err(|e| ApiError::from_json(e, OPTIONS_FIELD)),
    }
}

fn option_field(name: &str) -> String {
    format!("{OPTIONS_FIELD}.{name}")
}

/// A model name goes on the CLI's command line: it must not be empty or look like a flag.
pub fn check_model(model: Option<&str>) -> Result<(), ApiError> {
    match model {
        Some(model) if model.trim().is_empty() || model.starts_with('-') => Err(ApiError::invalid(
            option_field("model"),
            "model must be a non-empty model name",
        )),
        _ => Ok(()),
    }
}

/// Tool lists go on the command line one argument per entry: no empty entries, none that looks like a flag.
pub fn check_tools(name: &str, tools: Option<&[String]>) -> Result<(), ApiError> {
    if tools.is_some_and(|tools| tools.iter().any(|t| t.trim().is_empty() || t.starts_with('-'))) {
        return Err(ApiError::invalid(
            option_field(name),
            format!("{name} entries must be non-empty tool names"),
        ));
    }
    Ok(())
}

/// The options of a CLI that takes a model and nothing else.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelOnly {
    pub model: Option<String>,
}

impl ModelOnly {
    pub fn parse(value: Option<Value>) -> Result<Self, ApiError> {
        let options: ModelOnly = options(value)?;
        check_model(options.model.as_deref())?;
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field(err: ApiError) -> (u16, String) {
        use actix_web::ResponseError;
        let status = err.status_code().as_u16();
        match err {
            ApiError::InvalidRequest { field, .. } => (status, field),
            ApiError::InvalidJson { field, .. } => (status, field.unwrap_or_default()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn an_option_the_cli_cannot_honour_is_refused_by_name() {
        let err = ModelOnly::parse(Some(json!({"maxTurns": 3}))).unwrap_err();
        assert_eq!(field(err), (422, "providerOptions.maxTurns".into()));
        let err = ModelOnly::parse(Some(json!({"model": 3}))).unwrap_err();
        assert_eq!(field(err), (400, "providerOptions.model".into()));
        let err = ModelOnly::parse(Some(json!("fast"))).unwrap_err();
        assert_eq!(field(err), (400, "providerOptions".into()));
        let err = ModelOnly::parse(Some(json!({"model": "--help"}))).unwrap_err();
        assert_eq!(field(err), (422, "providerOptions.model".into()));
        let err = ModelOnly::parse(Some(json!({"mcpServers": {}}))).unwrap_err();
        assert_eq!(field(err), (422, "providerOptions.mcpServers".into()));
        assert_eq!(ModelOnly::parse(None).unwrap(), ModelOnly::default());
    }

    #[test]
    fn credentials_are_strings_long_enough_to_redact() {
        assert_eq!(token_only(json!("  long-enough-1 ")).unwrap().expose(), "long-enough-1");
        let err = token_only(json!("zq9x")).unwrap_err();
        assert!(!err.to_string().contains("zq9x"));
        assert_eq!(field(err), (422, CREDENTIAL_FIELD.into()));
        assert_eq!(
            field(token_only(json!({"a": 1})).unwrap_err()),
            (400, CREDENTIAL_FIELD.into())
        );
    }
}
