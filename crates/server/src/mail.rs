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
    // friction (issue 5)
    /// A security notice: delivery adds the one-click "freeze my account" link.
    #[serde(default)]
    pub security: bool,
    // end friction
}

// friction (issue 5)
impl MailContent {
    /// Marks the message as a security notice (it gets the freeze link).
    pub fn security(mut self) -> Self {
        self.security = true;
        self
    }
}
// end friction

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
    MailContent { subject: subject.to_owned(), text, html, security: false }
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
        ).security()
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
        .security()
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
        ).security()
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
        ).security()
    }

    /// Bad signatures or scope violations with an API key.
    pub fn api_key_abuse(label: &str, what: &str) -> MailContent {
        compose(
            "Suspicious requests with your API key",
            &[format!(
                "Requests with your API key \"{label}\" were refused: {what}. If this was not your software, revoke the key."
            )],
            None,
        ).security()
    }

    /// A refresh token was reused: probable token theft.
    pub fn session_reuse_alert(device: &str, when: &str) -> MailContent {
        compose(
            "Security alert: a session was ended",
            &[format!(
                "At {when} an old sign-in token of your session on \"{device}\" was presented again. This can mean the token was copied. We ended that session; sign in again on that device."
            )],
            None,
        ).security()
    }
}

// friction (issue 5): withdrawal, settings-lock, recovery and freeze notices.
/// Notices of the high-value friction flows (all are security notices).
pub mod friction_templates {
    use super::{MailContent, compose};

    /// A withdrawal address was added; it activates later unless cancelled.
    pub fn address_added(asset: &str, address: &str, label: &str, active_at: &str, cancel: &str) -> MailContent {
        compose(
            "A withdrawal address was added",
            &[
                format!("The {asset} address {address} (\"{label}\") was added to your withdrawal address book."),
                format!("It can receive withdrawals from {active_at}. If you did not add it, cancel it now with the link below and change your password."),
            ],
            Some(("Cancel this address", cancel)),
        )
        .security()
    }

    /// A withdrawal was confirmed and handed to the exchange.
    pub fn withdrawal_confirmed(asset: &str, amount: &str, destination: &str, hash: &str) -> MailContent {
        compose(
            "Withdrawal confirmed",
            &[
                format!("You confirmed a withdrawal of {amount} {asset} to {destination}."),
                format!("Approval reference (intent hash): {hash}"),
                "If this was not you, freeze your account now with the link below.".into(),
            ],
            None,
        )
        .security()
    }

    /// Security settings were locked.
    pub fn settings_locked() -> MailContent {
        compose(
            "Your security settings are locked",
            &["Your security settings are now locked: the password, API keys, withdrawal addresses and other security settings cannot be changed until you unlock them, which takes effect only after a waiting period.".into()],
            None,
        )
        .security()
    }

    /// An unlock was requested.
    pub fn settings_unlock_requested(at: &str, cancel: &str) -> MailContent {
        compose(
            "Your security settings will be unlocked",
            &[format!(
                "Someone (hopefully you) asked to unlock the security settings of your account. The unlock takes effect at {at}. If this was not you, cancel it with the link below and freeze your account."
            )],
            Some(("Cancel the unlock", cancel)),
        )
        .security()
    }

    /// A waiting unlock was cancelled.
    pub fn settings_unlock_cancelled() -> MailContent {
        compose(
            "Settings unlock cancelled",
            &["The waiting unlock of your security settings was cancelled. They stay locked.".into()],
            None,
        )
        .security()
    }

    /// The anti-phishing code was changed.
    pub fn anti_phishing_code_changed() -> MailContent {
        compose(
            "Your anti-phishing code was changed",
            &["The anti-phishing code shown in our emails was changed. From now on every email from us shows the new code.".into()],
            None,
        )
        .security()
    }

    /// A password-reset link.
    pub fn password_reset(link: &str, minutes: i64) -> MailContent {
        compose(
            "Reset your password",
            &[
                format!("Someone (hopefully you) asked to reset the password of your account. The link works once and expires in {minutes} minutes."),
                "Resetting the password does not remove your second factor: you will still need it to sign in. Withdrawals are held for a while after a reset.".into(),
            ],
            Some(("Choose a new password", link)),
        )
        .security()
    }

    /// The password was reset.
    pub fn password_reset_done(when: &str) -> MailContent {
        compose(
            "Your password was reset",
            &[format!(
                "The password of your account was reset with an emailed link at {when}. Every session was signed out and withdrawals are held for a while."
            )],
            None,
        )
        .security()
    }

    /// A recovery case was opened.
    pub fn recovery_opened(case_id: &str, not_before: &str, cancel: &str) -> MailContent {
        compose(
            "Account recovery requested",
            &[
                format!("A request to recover your account without its second factor was opened (case {case_id}). Our staff will review it; it cannot be carried out before {not_before}."),
                "If you did not ask for this, cancel it now with the link below.".into(),
            ],
            Some(("Cancel this recovery", cancel)),
        )
        .security()
    }

    /// A recovery was carried out.
    pub fn recovery_executed(hold_until: &str) -> MailContent {
        compose(
            "Your account was recovered",
            &[format!(
                "After review, your account was recovered: every session was signed out, API keys were suspended and second factors were removed. Sign in and enrol a new second factor. Withdrawals are held until {hold_until}."
            )],
            None,
        )
        .security()
    }

    /// A recovery case was closed without recovery.
    pub fn recovery_closed(case_id: &str, how: &str) -> MailContent {
        compose(
            "Account recovery closed",
            &[format!("The recovery request {case_id} was {how}. Nothing was changed on your account.")],
            None,
        )
        .security()
    }

    /// The account was frozen from a link.
    pub fn account_frozen() -> MailContent {
        compose(
            "Your account is frozen",
            &["Your account was frozen from the link in one of our emails: every session was signed out, API keys were suspended and withdrawals are blocked. To unfreeze it, contact support through the official channels and recover the account.".into()],
            None,
        )
        .security()
    }
}

/// Adds what every message must carry at delivery time: the recipient's anti-phishing code,
/// the official-channels link, and for security notices a one-click "freeze my account" link
/// (a fresh single-use token per message).
pub struct Decorator {
    /// Accounts, friction settings and link tokens.
    pub store: Arc<dyn gatehouse_core::store::Store>,
    /// Opens the sealed anti-phishing code.
    pub keyring: Keyring,
    /// Link tokens.
    pub rng: Arc<dyn SecureRng>,
    /// `server.public_origin`.
    pub origin: String,
    /// Link lifetimes.
    pub friction: crate::friction::FrictionConfig,
}

impl Decorator {
    /// The decorated message for `recipient`.
    pub async fn decorate(&self, c: MailContent, recipient: &str, now: Timestamp) -> anyhow::Result<MailContent> {
        use gatehouse_core::store::SideEffects;
        let account = match gatehouse_core::account::Email::parse(recipient) {
            Ok(e) => self.store.find_account_by_email(&e).await?,
            Err(_) => None,
        };
        let mut code_line = "You have not chosen an anti-phishing code yet. Choose one in your security centre: we will show it in every email, so a message without it is not from us.".to_owned();
        let mut freeze = None;
        if let Some(a) = &account {
            let f = self.store.find_friction(a.id).await?;
            if let Some(code) = crate::friction::open_code(&self.keyring, a.id, f.anti_phishing_sealed.as_deref()) {
                code_line = format!("Your anti-phishing code: {code}");
            }
            if c.security {
                let action = gatehouse_core::friction::LinkAction::Freeze;
                let (row, url) =
                    crate::friction::link_for(&self.origin, &self.friction, self.rng.as_ref(), a.id, &action, now);
                self.store.create_link(&row, SideEffects::default()).await?;
                freeze = Some(url);
            }
        }
        let official = format!("{}{}/official", self.origin, crate::routes::PREFIX);
        Ok(decorate_content(c, &code_line, freeze.as_deref(), &official))
    }
}

/// Puts the anti-phishing line at the top of both bodies, and the freeze link (when given)
/// and the official-channels link at the bottom. Pure, so every template is unit-tested.
pub fn decorate_content(mut c: MailContent, code_line: &str, freeze: Option<&str>, official: &str) -> MailContent {
    let mut text = format!("{code_line}\n\n{}", c.text);
    let mut tail = String::new();
    if let Some(url) = freeze {
        text.push_str(&format!(
            "\nNot you? Freeze your account now (one click, signs everyone out, blocks withdrawals): {url}\n"
        ));
        tail.push_str(&format!(
            "<p><strong>Not you?</strong> <a href=\"{}\">Freeze my account now</a></p>",
            escape(url)
        ));
    }
    text.push_str(&format!("\nOur official websites, apps and support addresses: {official}\n"));
    tail.push_str(&format!(
        "<p style=\"font-size:small\">Official channels: <a href=\"{0}\">{0}</a></p>",
        escape(official)
    ));
    let head = format!("<p style=\"border:1px solid #999;padding:.5em\"><strong>{}</strong></p>", escape(code_line));
    let mut html = c.html.clone();
    if let Some(pos) = html.find("<body").and_then(|b| html[b..].find('>').map(|e| b + e + 1)) {
        html.insert_str(pos, &head);
    } else {
        html.insert_str(0, &head);
    }
    match html.rfind("</body>") {
        Some(pos) => html.insert_str(pos, &tail),
        None => html.push_str(&tail),
    }
    c.text = text;
    c.html = html;
    c
}

// end friction

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
    // friction (issue 5)
    decorator: Option<Decorator>,
    // end friction
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
        Ok(Self { store, keyring, clock, from, sender, wake, decorator: None })
    }

    async fn deliver(&self, m: &QueuedMail) -> anyhow::Result<()> {
        let plain = self.keyring.open(&m.sealed, &Aad::new(&["mail_outbox", &m.id]))?;
        let content: MailContent = serde_json::from_slice(plain.expose())?;
        // friction (issue 5): anti-phishing code, official channels, freeze link.
        let content = match &self.decorator {
            Some(d) => d.decorate(content, &m.recipient, self.clock.now()).await?,
            None => content,
        };
        // end friction
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

    // friction (issue 5)
    /// Adds the anti-phishing decoration to every message.
    pub fn with_decorator(mut self, d: Decorator) -> Self {
        self.decorator = Some(d);
        self
    }
    // end friction

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

// friction (issue 5)
#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly
mod friction_tests {
    use super::friction_templates as f;
    use super::{MailContent, decorate_content, templates as t};

    fn every_template() -> Vec<MailContent> {
        use gatehouse_core::risk::Decision;
        vec![
            t::verify_email("https://x/v?token=a"),
            t::duplicate_registration(),
            t::password_changed("now", "1.2.3.4"),
            t::api_key_created("bot", "1.2.3.4"),
            t::risk_alert("a login", Decision::StepUp),
            t::api_key_expiring("bot", "soon"),
            t::api_key_new_network("bot", "1.2.3.4"),
            t::api_key_abuse("bot", "bad signatures"),
            t::session_reuse_alert("phone", "now"),
            f::address_added("BTC", "bc1qaddr", "cold", "later", "https://x/c"),
            f::withdrawal_confirmed("BTC", "1", "bc1qaddr", "abcd"),
            f::settings_locked(),
            f::settings_unlock_requested("later", "https://x/c"),
            f::settings_unlock_cancelled(),
            f::anti_phishing_code_changed(),
            f::password_reset("https://x/r", 30),
            f::password_reset_done("now"),
            f::recovery_opened("c1", "later", "https://x/c"),
            f::recovery_executed("later"),
            f::recovery_closed("c1", "rejected"),
            f::account_frozen(),
        ]
    }

    #[test]
    fn every_template_renders_the_code_the_official_link_and_for_security_notices_the_freeze_link() {
        for m in every_template() {
            let security = m.security;
            let freeze = security.then_some("https://gh.example/_gh/link?action=freeze&token=T");
            let d =
                decorate_content(m, "Your anti-phishing code: heron <42>", freeze, "https://gh.example/_gh/official");
            assert!(d.text.starts_with("Your anti-phishing code: heron <42>"), "{}", d.subject);
            assert!(d.html.contains("Your anti-phishing code: heron &lt;42&gt;"), "escaped in HTML: {}", d.subject);
            assert!(d.text.contains("/_gh/official") && d.html.contains("/_gh/official"), "{}", d.subject);
            assert_eq!(d.text.contains("action=freeze"), security, "{}", d.subject);
            assert_eq!(d.html.contains("Freeze my account now"), security, "{}", d.subject);
            let body = d.html.find("<body").unwrap();
            assert!(d.html.find("anti-phishing").unwrap() > body, "the code is inside the body");
            assert!(d.html.ends_with("</body></html>"));
        }
    }

    #[test]
    fn security_notices_are_marked() {
        assert!(t::password_changed("now", "ip").security);
        assert!(f::address_added("BTC", "a", "l", "t", "c").security);
        assert!(!t::verify_email("l").security);
        assert!(!t::api_key_expiring("k", "t").security);
    }
}
// end friction
