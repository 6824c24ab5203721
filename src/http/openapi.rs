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
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}
