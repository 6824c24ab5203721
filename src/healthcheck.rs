//! `unified-worker healthcheck [URL]`: exits 0 when `/health` answers 200, so images need no curl.

use std::time::Duration;

pub async fn run(url: Option<String>) -> i32 {
    let url = url.unwrap_or_else(|| {
        let port = std::env::var("PORT")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "5000".into());
        format!("http://127.0.0.1:{port}/health")
    });
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(5)).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("healthcheck: {e}");
            return 1;
        }
    };
    match client.get(&url).send().await {
        Ok(resp) if resp.status().is_success() => 0,
        Ok(resp) => {
            eprintln!("healthcheck: {url} answered {}", resp.status());
            1
        }
        Err(e) => {
            eprintln!("healthcheck: {url}: {e}");
            1
        }
    }
}
