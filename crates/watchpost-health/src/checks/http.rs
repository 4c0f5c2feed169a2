//! [`HttpCheck`]: `GET` a dependency's URL and expect a 2xx answer.

use std::time::Duration;

use crate::check::{CheckFuture, CheckOutcome, HealthCheck};
use crate::error::HealthError;

/// GETs a URL; 2xx passes, anything else (or no answer) fails.
///
/// The registry's timeout bounds the whole run; the client also carries its own
/// timeout (30 s by default) as a backstop for use outside a registry.
#[derive(Debug, Clone)]
pub struct HttpCheck {
    url: reqwest::Url,
    client: reqwest::Client,
}

impl HttpCheck {
    /// A check of `url` with a client of its own.
    pub fn new(url: &str) -> Result<Self, HealthError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| HealthError::HttpClient {
                url: url.to_owned(),
                source,
            })?;
        Self::with_client(url, client)
    }

    /// A check of `url` sharing `client`.
    pub fn with_client(url: &str, client: reqwest::Client) -> Result<Self, HealthError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| HealthError::InvalidUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(HealthError::InvalidUrl {
                url: url.to_owned(),
                reason: format!("scheme {:?} is not http or https", parsed.scheme()),
            });
        }
        Ok(Self {
            url: parsed,
            client,
        })
    }

    /// The URL checked.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }
}

impl HealthCheck for HttpCheck {
    fn run(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            // Only scheme, host and path go into outputs: a query string may carry a token.
            let shown = format!(
                "{}://{}{}",
                self.url.scheme(),
                self.url.host_str().unwrap_or(""),
                self.url.path()
            );
            match self.client.get(self.url.clone()).send().await {
                Ok(response) if response.status().is_success() => {
                    CheckOutcome::pass().observe("httpStatus", response.status().as_u16(), None)
                }
                Ok(response) => CheckOutcome::fail(format!(
                    "GET {shown} answered {}, expected 2xx",
                    response.status()
                ))
                .observe("httpStatus", response.status().as_u16(), None),
                Err(e) => CheckOutcome::fail(format!("GET {shown} failed: {}", e.without_url())),
            }
        })
    }
}
