//! The sealing of the waiting requests a shared store keeps (`GATEWAY_STORE_KEY`). A request carries the job's
//! credentials, so what lies in Redis while it waits is AES-256-GCM ciphertext that only gateways holding the key
//! can open, bound to its job id so that it cannot be passed off as another job's.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use ring::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    digest,
    rand::{SecureRandom, SystemRandom},
};

use super::StoreError;
use crate::secret::Secret;

/// What a sealed request starts with. A request as the client sent it is a JSON object (`{`), so one that a
/// gateway without the key put in line (during a rolling change of the setting) is told apart and read as it is.
const MAGIC: &[u8] = b"uw-sealed-1:";
/// The shortest secret taken: the key is its SHA-256, so it must carry at least as much chance as the key.
pub const MIN_SECRET_LEN: usize = 32;

pub struct RequestSeal {
    key: LessSafeKey,
    random: SystemRandom,
}

impl fmt::Debug for RequestSeal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestSeal")
    }
}

/// Why a stored request could not be opened.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OpenError {
    #[error("it was sealed by a gateway with GATEWAY_STORE_KEY, and this gateway has none")]
    NoKey,
    #[error("it does not open with this gateway's GATEWAY_STORE_KEY (the gateways' keys differ)")]
    WrongKey,
}

impl RequestSeal {
    /// The AES key is the SHA-256 of `secret`, so any secret of at least 32 characters serves (`openssl rand
    /// -base64 32`), and every gateway given the same secret has the same key.
    pub fn new(secret: &Secret) -> Result<Self, String> {
        if secret.expose().len() < MIN_SECRET_LEN {
            return Err(format!("must be at least {MIN_SECRET_LEN} characters"));
        }
        let hash = digest::digest(&digest::SHA256, secret.expose().as_bytes());
        let key = UnboundKey::new(&AES_256_GCM, hash.as_ref()).map_err(|_| "not a usable key".to_string())?;
        Ok(RequestSeal {
            key: LessSafeKey::new(key),
            random: SystemRandom::new(),
        })
    }

    /// `request` of `job_id`, sealed under a fresh random nonce.
    pub fn seal(&self, job_id: &str, request: &[u8]) -> Result<Bytes, StoreError> {
        let failed = |what: &str| StoreError(format!("could not seal the request: {what}"));
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| failed("no random source"))?;
        let mut sealed = request.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(job_id.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| failed("too large"))?;
        let mut out = BytesMut::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
        out.put_slice(MAGIC);
        out.put_slice(&nonce);
        out.put_slice(&sealed);
        Ok(out.freeze())
    }
}

/// What the store held for `job_id`, opened with `seal`; a request that was never sealed passes as it is.
pub fn open(seal: Option<&RequestSeal>, job_id: &str, stored: Bytes) -> Result<Bytes, OpenError> {
    let Some(rest) = stored.strip_prefix(MAGIC) else {
        return Ok(stored);
    };
    let seal = seal.ok_or(OpenError::NoKey)?;
    if rest.len() < NONCE_LEN {
        return Err(OpenError::WrongKey);
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::WrongKey)?;
    let mut buffer = ciphertext.to_vec();
    let plain = seal
        .key
        .open_in_place(nonce, Aad::from(job_id.as_bytes()), &mut buffer)
        .map_err(|_| OpenError::WrongKey)?;
    Ok(Bytes::copy_from_slice(plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(secret: &str) -> RequestSeal {
        RequestSeal::new(&Secret::new(secret)).unwrap()
    }

    const SECRET: &str = "a-secret-of-more-than-32-characters!";

    #[test]
    fn a_sealed_request_opens_only_with_the_same_key_and_the_same_job() {
        let request = br#"{"userRequest":"x","codingAssistantAccessToken":"sk-CANARY-123"}"#;
        let sealed = seal(SECRET).seal("job-1", request).unwrap();

        assert!(sealed.starts_with(MAGIC));
        assert!(
            !sealed.windows(6).any(|w| w == b"CANARY"),
            "the credential is not readable in the store"
        );
        assert_ne!(
            sealed,
            seal(SECRET).seal("job-1", request).unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(
            open(Some(&seal(SECRET)), "job-1", sealed.clone()).unwrap(),
            &request[..]
        );
        assert_eq!(
            open(Some(&seal(SECRET)), "job-2", sealed.clone()),
            Err(OpenError::WrongKey)
        );
        let other = seal("another-secret-of-more-than-32-characters");
        assert_eq!(open(Some(&other), "job-1", sealed.clone()), Err(OpenError::WrongKey));
        assert_eq!(open(None, "job-1", sealed), Err(OpenError::NoKey));
    }

    #[test]
    fn an_unsealed_request_passes_and_a_short_secret_is_refused() {
        let plain = Bytes::from_static(br#"{"userRequest":"x"}"#);
        assert_eq!(open(Some(&seal(SECRET)), "job-1", plain.clone()).unwrap(), plain);
        assert_eq!(open(None, "job-1", plain.clone()).unwrap(), plain);
        assert!(RequestSeal::new(&Secret::new("short")).is_err());
        assert_eq!(
            open(Some(&seal(SECRET)), "job-1", Bytes::from_static(b"uw-sealed-1:xy")),
            Err(OpenError::WrongKey)
        );
    }
}
