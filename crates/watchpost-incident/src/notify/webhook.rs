//! [`WebhookNotifier`]: the notification as JSON to any URL, signed with HMAC-SHA256.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Notifier, NotifyError, http_client, post_json};
use crate::model::Channel;
use crate::outbox::Notification;
use crate::store::BoxFuture;

/// The signature header: `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "x-watchpost-signature";

/// `sha256=<hex>` of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so the error branch is never taken.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts notifications to a URL with a signature header.
#[derive(Clone)]
pub struct WebhookNotifier {
    url: String,
    secret: Vec<u8>,
    client: reqwest::Client,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl WebhookNotifier {
    /// A notifier posting to `url`, signing with `secret`.
    pub fn new(url: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            url: url.into(),
            secret: secret.into(),
            client: http_client(),
        }
    }
}

impl Notifier for WebhookNotifier {
    fn channel(&self) -> Channel {
        Channel::Webhook
    }

    fn send<'a>(
        &'a self,
        n: &'a Notification,
        mut headers: http::HeaderMap,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(n).map_err(|e| NotifyError::Permanent(e.to_string()))?;
            if let Ok(v) = http::HeaderValue::from_str(&sign(&self.secret, &body)) {
                headers.insert(SIGNATURE_HEADER, v);
            }
            if let Ok(v) = http::HeaderValue::from_str(n.kind.as_str()) {
                headers.insert("x-watchpost-event", v);
            }
            post_json(&self.client, &self.url, body, headers, n).await
        })
    }
}
