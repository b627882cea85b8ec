//! Security notices about second factors.

use crate::mail::{MailContent, compose};

/// A second factor was turned on.
pub fn factor_added(what: &str, ip: &str) -> MailContent {
    compose(
        "A second factor was added to your account",
        &[
            format!("{what} was added to your account from IP address {ip}."),
            "If this was not you, freeze your account and contact support immediately.".into(),
        ],
        None,
    )
}

/// A second factor was removed.
pub fn factor_removed(what: &str, ip: &str) -> MailContent {
    compose(
        "A second factor was removed from your account",
        &[
            format!("{what} was removed from your account from IP address {ip}."),
            "If this was not you, freeze your account and contact support immediately.".into(),
        ],
        None,
    )
}

/// A TOTP code was presented twice (R24).
pub fn totp_replay(ip: &str) -> MailContent {
    compose(
        "An authenticator code was reused",
        &[
            format!("Someone at IP address {ip} presented an authenticator code that had already been used. It was refused."),
            "If this was not you, your password and a recent code may have been phished: change your password and review your sessions.".into(),
        ],
        None,
    )
}

/// A backup code was used.
pub fn backup_code_used(remaining: usize, ip: &str) -> MailContent {
    compose(
        "A backup code was used",
        &[
            format!(
                "A backup code was used to sign in or confirm an action from IP address {ip}. {remaining} unused codes remain."
            ),
            "If this was not you, freeze your account and contact support immediately.".into(),
        ],
        None,
    )
}

/// The backup codes were regenerated.
pub fn backup_codes_regenerated(ip: &str) -> MailContent {
    compose(
        "New backup codes were generated",
        &[
            format!("A new set of backup codes was generated from IP address {ip}. The previous codes no longer work."),
            "If this was not you, freeze your account and contact support immediately.".into(),
        ],
        None,
    )
}

/// A WebAuthn credential's sign counter went backwards (R31).
pub fn clone_suspected(name: &str) -> MailContent {
    compose(
        "A security key may have been cloned",
        &[
            format!(
                "Your security key \"{name}\" presented a signature counter lower than before, a sign that it may have been copied. It has been disabled."
            ),
            "Remove it from your account and register a new one. If you did not just use it, contact support.".into(),
        ],
        None,
    )
}
