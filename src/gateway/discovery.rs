//! Finds the workers (`GATEWAY_WORKERS`): a fixed list, Swarm's DNS (`tasks.<service>`), or the Docker engine's
//! view of a service (see `docker`). Each source publishes the current list of base URLs into one channel.

pub mod docker;

use std::{net::SocketAddr, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::settings::Source;

/// Swarm's embedded DNS is local and cheap; a replacement replica should be used within about a second.
const DNS_INTERVAL: Duration = Duration::from_secs(1);

pub fn spawn(source: &Source, stop: CancellationToken) -> watch::Receiver<Vec<String>> {
    let (found, rx) = watch::channel(Vec::new());
    match source.clone() {
        Source::Static(urls) => {
            found.send_replace(urls);
        }
        Source::Dns { host, port } => {
            tokio::spawn(resolve_forever(host, port, found, stop));
        }
        Source::Docker { service, port } => {
            tokio::spawn(docker::watch(service, port, found, stop));
        }
    }
    rx
}

async fn resolve_forever(host: String, port: u16, found: watch::Sender<Vec<String>>, stop: CancellationToken) {
    loop {
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addrs) => {
                let urls = base_urls(addrs);
                found.send_if_modified(|old| {
                    let changed = *old != urls;
                    *old = urls;
                    changed
                });
            }
            // A failed lookup keeps the last answer: dropping every worker on one DNS hiccup would break their
            // streams. Workers that really went away stop answering their polls and are marked down.
            Err(e) => tracing::warn!(host = %host, error = %e, "worker lookup failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(DNS_INTERVAL) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Sorted and without duplicates (the resolver answers once per socket type).
pub fn base_urls(addrs: impl IntoIterator<Item = SocketAddr>) -> Vec<String> {
    let mut urls: Vec<String> = addrs.into_iter().map(|a| format!("http://{a}")).collect();
    urls.sort();
    urls.dedup();
    urls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_sorted_unique_base_urls() {
        let addrs: Vec<SocketAddr> = ["10.0.1.7:5000", "10.0.1.5:5000", "10.0.1.7:5000", "[fd00::1]:5000"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(
            base_urls(addrs),
            vec!["http://10.0.1.5:5000", "http://10.0.1.7:5000", "http://[fd00::1]:5000"]
        );
    }

    #[tokio::test]
    async fn dns_discovery_finds_the_addresses_of_a_name() {
        let stop = CancellationToken::new();
        let mut rx = spawn(
            &Source::Dns {
                host: "localhost".into(),
                port: 5999,
            },
            stop.clone(),
        );
        let urls = rx.wait_for(|u| !u.is_empty()).await.unwrap().clone();
        assert!(urls.iter().any(|u| u == "http://127.0.0.1:5999"), "{urls:?}");
        stop.cancel();
    }
}
