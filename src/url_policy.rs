//! Which URLs the worker may connect to on a client's behalf (repo URLs, callbacks): docs/api.md.

use reqwest::Url;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlRejected {
    #[error("not a valid absolute URL")]
    Malformed,
    #[error("scheme {0:?} is not allowed; use https")]
    Scheme(String),
    #[error("credentials in the URL are not allowed; send the token in its own field")]
    Userinfo,
    #[error("host {0:?} is not in the allowed hosts")]
    Host(String),
    #[error("IP address {0:?} is not allowed unless listed explicitly")]
    IpLiteral(String),
}

pub struct UrlPolicy<'a> {
    pub allowed_hosts: &'a [String],
    /// Plain http is for tests against servers on loopback only.
    pub allow_insecure: bool,
}

impl UrlPolicy<'_> {
    pub fn check(&self, raw: &str) -> Result<Url, UrlRejected> {
        let url = Url::parse(raw.trim()).map_err(|_| UrlRejected::Malformed)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure => {}
            other => return Err(UrlRejected::Scheme(other.to_string())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRejected::Userinfo);
        }
        let host = match url.host() {
            None => return Err(UrlRejected::Malformed),
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        };
        let listed = self.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(&host));
        let is_ip = !matches!(url.host(), Some(url::Host::Domain(_)));
        match (listed, is_ip) {
            (true, _) => Ok(url),
            (false, true) => Err(UrlRejected::IpLiteral(host)),
            (false, false) => Err(UrlRejected::Host(host)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str], insecure: bool) -> (Vec<String>, bool) {
        (hosts.iter().map(|h| h.to_string()).collect(), insecure)
    }

    fn check(p: &(Vec<String>, bool), url: &str) -> Result<Url, UrlRejected> {
        UrlPolicy {
            allowed_hosts: &p.0,
            allow_insecure: p.1,
        }
        .check(url)
    }

    #[test]
    fn github_https_passes_and_every_other_form_is_refused() {
        let p = policy(&["github.com"], false);
        assert!(check(&p, "https://github.com/owner/repo.git").is_ok());
        assert!(check(&p, "https://GitHub.com/owner/repo").is_ok());
        assert_eq!(
            check(&p, "http://github.com/o/r").unwrap_err(),
            UrlRejected::Scheme("http".into())
        );
        assert_eq!(
            check(&p, "file:///etc/passwd").unwrap_err(),
            UrlRejected::Scheme("file".into())
        );
        assert_eq!(check(&p, "/srv/repo.git").unwrap_err(), UrlRejected::Malformed);
        assert_eq!(check(&p, "git@github.com:o/r.git").unwrap_err(), UrlRejected::Malformed);
        assert_eq!(
            check(&p, "https://x:y@github.com/o/r").unwrap_err(),
            UrlRejected::Userinfo
        );
        assert_eq!(
            check(&p, "https://token@github.com/o/r").unwrap_err(),
            UrlRejected::Userinfo
        );
        assert_eq!(
            check(&p, "https://gitlab.com/o/r").unwrap_err(),
            UrlRejected::Host("gitlab.com".into())
        );
        assert!(matches!(
            check(&p, "https://140.82.112.3/o/r").unwrap_err(),
            UrlRejected::IpLiteral(_)
        ));
        assert!(matches!(
            check(&p, "https://[::1]/o/r").unwrap_err(),
            UrlRejected::IpLiteral(_)
        ));
        assert!(matches!(
            check(&p, "https://github.com.evil.net/o/r").unwrap_err(),
            UrlRejected::Host(_)
        ));
    }

    #[test]
    fn insecure_http_only_for_listed_loopback_in_tests() {
        let p = policy(&["127.0.0.1"], true);
        assert!(check(&p, "http://127.0.0.1:8080/repo.git").is_ok());
        assert!(matches!(
            check(&p, "http://127.0.0.2/repo.git").unwrap_err(),
            UrlRejected::IpLiteral(_)
        ));
    }
}
