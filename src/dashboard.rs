//! The dashboard (`GET /`): one page whose HTML, CSS and JavaScript are embedded in the binary, no build step and
//! nothing fetched from elsewhere. The gateway serves it for the whole fleet (workers, line, last hour, any job's
//! stream); a worker serves the same page for its one job. The page calls only the server's own endpoints.
//!
//! Everything the page shows from events is provider output, so untrusted: the script only ever sets `textContent`
//! (a test below keeps it that way), and the Content-Security-Policy allows no script or style but the page's own,
//! pinned by hash, so that even a mistake there could not run injected code.

use std::sync::{Arc, LazyLock};

use actix_web::{HttpResponse, web};
use base64::Engine;

use crate::{settings::Settings, worker::Worker};

/// What the page is for: the fleet (gateway) or one worker's job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Fleet,
    Worker,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Fleet => "fleet",
            Role::Worker => "worker",
        }
    }
}

const HTML: &str = include_str!("dashboard/page.html");
const STYLE: &str = include_str!("dashboard/page.css");
/// The script files in dependency order, in one strict-mode scope of their own.
const SCRIPT: &str = concat!(
    "(() => {\n\"use strict\";\n",
    include_str!("dashboard/base.js"),
    include_str!("dashboard/sse.js"),
    include_str!("dashboard/api.js"),
    include_str!("dashboard/job.js"),
    include_str!("dashboard/events.js"),
    include_str!("dashboard/chart.js"),
    include_str!("dashboard/fleet.js"),
    include_str!("dashboard/main.js"),
    "})();\n"
);

struct Pages {
    /// Indexed by role (fleet, worker), then by whether a token is required.
    html: [[String; 2]; 2],
    csp: String,
}

static PAGES: LazyLock<Pages> = LazyLock::new(|| {
    // The form's suggestions come from the registry (with the `ACP_AGENTS` entries, registered at start), so a new
    // provider shows up on the page without an edit here. Names are plain, but escaped all the same.
    let providers = crate::provider::ProviderKind::all()
        .map(|p| escape_attribute(p.as_str()))
        .collect::<Vec<_>>()
        .join(",");
    let build = |role: Role, token: bool| {
        // The placeholders are filled before the style and script go in, so nothing in those can be mistaken for one.
        HTML.replace("{{role}}", role.as_str())
            .replace("{{auth}}", if token { "token" } else { "none" })
            .replace("{{providers}}", &providers)
            .replace("/*style*/", STYLE)
            .replace("/*script*/", SCRIPT)
    };
    let csp = format!(
        "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; img-src data:; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'",
        sha256(SCRIPT),
        sha256(STYLE)
    );
    Pages {
        html: [
            [build(Role::Fleet, false), build(Role::Fleet, true)],
            [build(Role::Worker, false), build(Role::Worker, true)],
        ],
        csp,
    }
});

fn escape_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A CSP source expression pinning an inline block by its hash.
fn sha256(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    )
}

/// The page, open without a token: it holds no secret, only whether the API asks for one (then the page asks the
/// user for it and keeps it in the tab's session storage).
pub fn page(role: Role, settings: &Settings) -> HttpResponse {
    let pages = &*PAGES;
    let html = &pages.html[role as usize][usize::from(settings.api_token.is_some())];
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", pages.csp.as_str()))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Cache-Control", "no-cache"))
        .body(html.clone())
}

/// `GET /` on a worker: the page for its one job.
#[utoipa::path(get, path = "/", tag = "worker",
    responses((status = 200, description = "The dashboard for this worker's job (an HTML page; open, it holds no secret)", content_type = "text/html", body = String)))]
pub async fn worker_page(worker: web::Data<Arc<Worker>>) -> HttpResponse {
    page(Role::Worker, &worker.settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inline_style_and_script_are_exactly_what_the_policy_pins() {
        let page = &PAGES.html[0][1];
        let between = |open: &str, close: &str| {
            let start = page.find(open).expect("opening tag") + open.len();
            &page[start..start + page[start..].find(close).expect("closing tag")]
        };
        assert_eq!(between("<style>", "</style>"), STYLE);
        assert_eq!(between("<script>", "</script>"), SCRIPT);
        assert!(PAGES.csp.contains(&format!("script-src '{}'", sha256(SCRIPT))));
        assert!(page.contains(r#"data-role="fleet""#) && page.contains(r#"data-auth="token""#));
        assert!(PAGES.html[1][0].contains(r#"data-role="worker""#) && PAGES.html[1][0].contains(r#"data-auth="none""#));
        assert!(
            page.contains(r#"data-providers="claude-code,"#),
            "the providers come from the registry"
        );
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_never_parses_html_from_data() {
        for page in PAGES.html.iter().flatten() {
            assert!(!page.contains("{{"), "a placeholder was left");
            for attr in ["src=\"http", "href=\"http", "src=\"//", "href=\"//", "@import", "url("] {
                assert!(!page.contains(attr), "the page refers to something outside: {attr}");
            }
        }
        // Event data is rendered with textContent only: these would parse it as markup.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!SCRIPT.contains(sink), "the script uses {sink}");
        }
        assert!(!SCRIPT.contains("</script"), "the script would end its own block");
    }
}
