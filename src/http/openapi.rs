//! What both published documents (`GET /openapi.json` of the worker and of the gateway) are made with: the bearer
//! scheme, and the rendering that adds the version and the event union.

use utoipa::{
    Modify,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};

/// The bearer scheme every job endpoint names.
pub struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("WORKER_API_TOKEN, when the worker has one"))
                    .build(),
            ),
        );
    }
}

pub fn render(mut api: utoipa::openapi::OpenApi) -> String {
    api.info.version = env!("CARGO_PKG_VERSION").to_string();
    let mut doc = serde_json::to_value(&api).unwrap_or_default();
    crate::sse_wire::schema::describe_events(&mut doc);
    let mut text = serde_json::to_string_pretty(&sorted(doc)).unwrap_or_default();
    text.push('\n');
    text
}

/// Every object's keys in name order, whatever order serde_json's maps keep (the ACP crate turns on its
/// `preserve_order`): the published document stays byte for byte what the committed copies hold.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut members: Vec<_> = map.into_iter().collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(members.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
