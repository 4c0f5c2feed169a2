//! [`SmtpNotifier`]: plain-text email over SMTP with lettre (`WATCHPOST_SMTP_URL`).

use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Notifier, NotifyError, headline, incident_url};
use crate::model::Channel;
use crate::outbox::Notification;
use crate::store::BoxFuture;

/// Sends email through one SMTP server.
#[derive(Clone)]
pub struct SmtpNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
    to: Vec<lettre::message::Mailbox>,
    public_url: Option<String>,
}

impl std::fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpNotifier")
            .field("from", &self.from)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

impl SmtpNotifier {
    /// A notifier for an SMTP URL such as `smtp://host:25` or `smtps://user:pass@host:465`.
    pub fn new(
        url: &str,
        from: &str,
        to: &[String],
        public_url: Option<String>,
    ) -> Result<Self, crate::IncidentError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            crate::IncidentError::Config(format!(
                "{what}: {e}; check WATCHPOST_SMTP_URL and the email addresses"
            ))
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| bad("invalid SMTP URL", &e))?
            .timeout(Some(std::time::Duration::from_secs(10)))
            .build();
        let from = from
            .parse()
            .map_err(|e| bad("invalid sender address", &e))?;
        let to = to
            .iter()
            .map(|a| a.parse().map_err(|e| bad("invalid recipient address", &e)))
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(crate::IncidentError::Config(
                "email notifications need at least one recipient".into(),
            ));
        }
        Ok(Self {
            transport,
            from,
            to,
            public_url,
        })
    }

    /// The message body for `n`.
    pub fn body(&self, n: &Notification) -> String {
        let i = &n.incident;
        let mut b = format!(
            "{}\n\nSeverity: {} ({})\nStatus: {}\nService: {}\nStarted: {}\n",
            headline(n),
            i.severity,
            i.priority,
            i.status.as_str(),
            i.service.as_deref().unwrap_or("-"),
            i.started_at.to_rfc3339()
        );
        if let Some(d) = &i.description {
            b.push_str(&format!("\n{d}\n"));
        }
        if let Some((_, s, note)) = i.latest_update() {
            b.push_str(&format!("\nLatest update ({}): {note}\n", s.as_str()));
        }
        if let Some(u) = incident_url(self.public_url.as_deref(), i) {
            b.push_str(&format!("\nIncident: {u}\n"));
        }
        if let Some(r) = &i.runbook_url {
            b.push_str(&format!("Runbook: {r}\n"));
        }
        b
    }
}

impl Notifier for SmtpNotifier {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn send<'a>(
        &'a self,
        n: &'a Notification,
        _headers: http::HeaderMap,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let mut builder = Message::builder()
                .from(self.from.clone())
                .subject(headline(n))
                .message_id(Some(format!("<{}@watchpost>", n.id)))
                .header(ContentType::TEXT_PLAIN);
            for to in &self.to {
                builder = builder.to(to.clone());
            }
            let message = builder
                .body(self.body(n))
                .map_err(|e| NotifyError::Permanent(e.to_string()))?;
            match self.transport.send(message).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(NotifyError::Permanent(e.to_string())),
                Err(e) => Err(NotifyError::Retryable {
                    reason: e.to_string(),
                    retry_after: None,
                }),
            }
        })
    }
}
