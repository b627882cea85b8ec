//! Outgoing mail: composed here, queued sealed in the outbox inside the transaction that
//! causes it, and delivered by a background worker that retries until the SMTP server
//! accepts the message (F18). Bodies carry links with tokens, so they are sealed with the
//! envelope keyring while they wait and wiped once sent.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::clock::{Clock, Span, Timestamp};
use gatehouse_core::crypto::envelope::{Aad, Keyring};
use gatehouse_core::rng::SecureRng;
use gatehouse_core::store::{MailStore, QueuedMail, StoreError};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::config::{MailConfig, MailTransport};

/// A composed message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MailContent {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Builds the two bodies from paragraphs and an optional call-to-action link.
pub(crate) fn compose(subject: &str, paragraphs: &[String], action: Option<(&str, &str)>) -> MailContent {
    let mut text = String::new();
    let mut html = String::from("<!doctype html><html><body style=\"font-family:sans-serif;max-width:36em\">");
    for p in paragraphs {
        text.push_str(p);
        text.push_str("\n\n");
        html.push_str(&format!("<p>{}</p>", escape(p)));
    }
    if let Some((label, url)) = action {
        text.push_str(&format!("{label}: {url}\n\n"));
        html.push_str(&format!("<p><a href=\"{}\">{}</a></p>", escape(url), escape(label)));
    }
    let footer = "This message was sent by gatehouse, the security service of your exchange account. \
                  We will never ask for your password or codes by email.";
    text.push_str(footer);
    text.push('\n');
    html.push_str(&format!("<hr><p style=\"color:#555;font-size:small\">{}</p></body></html>", escape(footer)));
    MailContent { subject: subject.to_owned(), text, html }
}

/// The messages gatehouse sends.
pub mod templates {
    use super::{MailContent, compose};

    /// Address verification after registration.
    pub fn verify_email(link: &str) -> MailContent {
        compose(
            "Verify your email address",
            &["Someone (hopefully you) created an account with this address. Confirm it to finish signing up. The link works once and expires in 24 hours.".into()],
            Some(("Verify this address", link)),
        )
    }

    /// Someone tried to register an address that already has an account.
    pub fn duplicate_registration() -> MailContent {
        compose(
            "Sign-up attempt with your address",
            &["Someone tried to create a new account with this email address, which already has one. If this was you, sign in instead; if not, you can ignore this message — nothing has changed.".into()],
            None,
        )
    }

    /// Password changed.
    pub fn password_changed(when: &str, ip: &str) -> MailContent {
        compose(
            "Your password was changed",
            &[
                format!(
                    "The password of your account was changed at {when} from IP address {ip}. All other sessions were signed out."
                ),
                "If this was not you, contact support immediately and secure your email account.".into(),
            ],
            None,
        )
    }

    /// An API key was created.
    pub fn api_key_created(label: &str, ip: &str) -> MailContent {
        compose(
            "A new API key was created",
            &[
                format!("An API key labelled \"{label}\" was created for your account from IP address {ip}."),
                "If this was not you, revoke the key in your security centre and change your password now.".into(),
            ],
            None,
        )
    }

    /// A sign-in from an unfamiliar device or network waits for the owner's confirmation.
    pub fn confirm_sign_in(ip: &str, device: &str, link: &str) -> MailContent {
        compose(
            "Confirm a sign-in from a new device",
            &[
                format!("Someone signed in to your account with the correct password from IP address {ip} ({device}), which we have not seen you use before."),
                "If this was you, confirm it with the link below, then sign in again. The link works once and expires in 30 minutes.".into(),
                "If this was not you, do not click the link: change your password now, and enrol a second factor.".into(),
            ],
            Some(("Yes, this was me", link)),
        )
    }

    /// The risk engine challenged or refused something on the account.
    pub fn risk_alert(what: &str, decision: gatehouse_core::risk::Decision) -> MailContent {
        use gatehouse_core::risk::Decision;
        let action = match decision {
            Decision::Allow => "was allowed",
            Decision::StepUp => "needed extra verification",
            Decision::Deny => "was refused",
            Decision::Freeze => "was refused and your account was frozen to protect your funds",
        };
        compose(
            "Unusual activity on your account",
            &[
                format!("We noticed {what}. It did not match how your account is usually used, so it {action}."),
                "If this was you, there is nothing to do. If it was not, change your password and revoke your API keys now.".into(),
            ],
            None,
        )
    }

    /// An API key expires soon.
    pub fn api_key_expiring(label: &str, expires: &str) -> MailContent {
        compose(
            "Your API key expires soon",
            &[format!(
                "Your API key \"{label}\" expires at {expires}. Keys cannot be extended: rotate it in your security centre (the old key keeps working for a day after rotation) and move your software to the new one."
            )],
            None,
        )
    }

    /// An API key was used from a new network.
    pub fn api_key_new_network(label: &str, ip: &str) -> MailContent {
        compose(
            "Your API key was used from a new network",
            &[format!(
                "Your API key \"{label}\" was just used from IP address {ip}, which it had not been used from before. If you did not expect this, revoke the key now."
            )],
            None,
        )
    }

    /// Bad signatures or scope violations with an API key.
    pub fn api_key_abuse(label: &str, what: &str) -> MailContent {
        compose(
            "Suspicious requests with your API key",
            &[format!(
                "Requests with your API key \"{label}\" were refused: {what}. If this was not your software, revoke the key."
            )],
            None,
        )
    }

    /// A refresh token was reused: probable token theft.
    pub fn session_reuse_alert(device: &str, when: &str) -> MailContent {
        compose(
            "Security alert: a session was ended",
            &[format!(
                "At {when} an old sign-in token of your session on \"{device}\" was presented again. This can mean the token was copied. We ended that session; sign in again on that device."
            )],
            None,
        )
    }
}

/// Seals `content` into an outbox row addressed to `to`.
pub fn queue(
    keyring: &Keyring,
    rng: &dyn SecureRng,
    to: &str,
    content: &MailContent,
    now: Timestamp,
) -> Result<QueuedMail, anyhow::Error> {
    let id = gatehouse_core::ids::SessionId::generate(now, rng).to_string();
    let json = serde_json::to_vec(content)?;
    let sealed = keyring.seal(&json, &Aad::new(&["mail_outbox", &id]), rng)?;
    Ok(QueuedMail { id, recipient: to.to_owned(), sealed, created_at: now })
}

enum Sender {
    File(std::path::PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// The delivery worker.
pub struct Mailer {
    store: Arc<dyn MailStore>,
    keyring: Keyring,
    clock: Arc<dyn Clock>,
    from: Mailbox,
    sender: Sender,
    wake: Arc<Notify>,
}

impl Mailer {
    /// Builds the worker from configuration.
    pub fn new(
        cfg: &MailConfig,
        data_dir: &std::path::Path,
        store: Arc<dyn MailStore>,
        keyring: Keyring,
        clock: Arc<dyn Clock>,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let from: Mailbox = cfg.from.parse().map_err(|e| anyhow::anyhow!("mail.from: {e}"))?;
        let timeout = Some(Duration::from_millis(cfg.timeout_ms));
        let creds = (!cfg.smtp_username.is_empty())
            .then(|| Credentials::new(cfg.smtp_username.clone(), cfg.smtp_password.expose().to_owned()));
        let sender = match cfg.transport {
            MailTransport::File => Sender::File(data_dir.join("mail")),
            MailTransport::Smtp => {
                let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.smtp_host.as_str())
                    .port(cfg.smtp_port)
                    .timeout(timeout);
                if let Some(c) = creds {
                    b = b.credentials(c);
                }
                Sender::Smtp(b.build())
            }
            MailTransport::Starttls => {
                let mut b = AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.smtp_host)?
                    .port(cfg.smtp_port)
                    .timeout(timeout);
                if let Some(c) = creds {
                    b = b.credentials(c);
                }
                Sender::Smtp(b.build())
            }
            MailTransport::Tls => {
                let mut b =
                    AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.smtp_host)?.port(cfg.smtp_port).timeout(timeout);
                if let Some(c) = creds {
                    b = b.credentials(c);
                }
                Sender::Smtp(b.build())
            }
        };
        Ok(Self { store, keyring, clock, from, sender, wake })
    }

    async fn deliver(&self, m: &QueuedMail) -> anyhow::Result<()> {
        let plain = self.keyring.open(&m.sealed, &Aad::new(&["mail_outbox", &m.id]))?;
        let content: MailContent = serde_json::from_slice(plain.expose())?;
        let to: Mailbox = m.recipient.parse()?;
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(content.subject)
            .message_id(Some(format!("<{}@gatehouse>", m.id)))
            .multipart(MultiPart::alternative_plain_html(content.text, content.html))?;
        match &self.sender {
            Sender::Smtp(t) => {
                t.send(msg).await?;
            }
            Sender::File(dir) => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::create_dir_all(dir)?;
                let path = dir.join(format!("{}.eml", m.id));
                let mut f =
                    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
                f.write_all(&msg.formatted())?;
            }
        }
        Ok(())
    }

    /// Delivers what is due; returns how many were sent.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let batch = self.store.claim_mail(now, Span::secs(60), 20).await?;
        let mut sent = 0;
        for m in &batch {
            match self.deliver(m).await {
                Ok(()) => {
                    self.store.mark_mail_sent(&m.id, self.clock.now()).await?;
                    sent += 1;
                }
                Err(e) => {
                    tracing::warn!(mail_id = %m.id, error = %e, "mail delivery failed; will retry");
                    self.store.mark_mail_failed(&m.id, &e.to_string(), self.clock.now().plus(Span::secs(5))).await?;
                }
            }
        }
        Ok(sent)
    }

    /// Runs forever: on every wake-up and at least every second.
    pub async fn run(self) {
        loop {
            match self.run_once().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "mail outbox unavailable"),
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
        }
    }
}
