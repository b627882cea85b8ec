//! Accounts: email identity, status and roles.
//!
//! Email addresses are the login name. They are normalised once, here (trimmed, lower-cased),
//! so that `Alice@Example.com` and `alice@example.com` are one account and share one throttle
//! counter. There are no seeded or default accounts (R11): the first administrator is created
//! with the operator CLI.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::ids::UserId;
use crate::password::PasswordHashString;

/// Longest email address accepted (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// A syntactically plausible, normalised email address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

/// Why an email address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Not of the form `local@domain.tld` within the length limits, or containing control or
    /// whitespace characters.
    #[error("not a valid email address")]
    Invalid,
}

impl Email {
    /// Validates and normalises an address. Deliberately conservative: one `@`, a non-empty
    /// local part ≤ 64 bytes, a dotted domain of letters, digits and hyphens, no whitespace or
    /// control characters, ≤ 254 bytes overall.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let s = raw.trim();
        if s.is_empty() || s.len() > MAX_EMAIL_BYTES {
            return Err(EmailError::Invalid);
        }
        let (local, domain) = s.split_once('@').ok_or(EmailError::Invalid)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local.chars().all(|c| {
                c.is_ascii_graphic()
                    && !matches!(c, '@' | '"' | '(' | ')' | ',' | ':' | ';' | '<' | '>' | '[' | '\\' | ']')
            });
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !(local_ok && domain_ok) {
            return Err(EmailError::Invalid);
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds an address read from storage (already normalised).
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether an account may sign in at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Normal.
    Active,
    /// Disabled by an administrator; answers exactly like a wrong password (R16).
    Disabled,
}

impl AccountStatus {
    /// Stable storage form.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    /// Parses the storage form; anything unknown is treated as disabled (fail closed).
    pub fn from_stored(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            _ => Self::Disabled,
        }
    }
}

/// An account as stored.
#[derive(Clone, Debug)]
pub struct Account {
    /// Its id.
    pub id: UserId,
    /// Login name.
    pub email: Email,
    /// When the address was proven by a verification link; `None` until then.
    pub email_verified_at: Option<Timestamp>,
    /// Argon2id PHC string.
    pub password_hash: PasswordHashString,
    /// Active or disabled.
    pub status: AccountStatus,
    /// Staff account (recovery reviewer, support); stricter lockout and idle limits (R20).
    pub is_admin: bool,
    /// Flagged high-value: must use phishing-resistant factors.
    pub high_value: bool,
    /// Created at.
    pub created_at: Timestamp,
    /// Last password change.
    pub password_changed_at: Timestamp,
    /// Set while the account is frozen: sessions revoked, API keys suspended, withdrawals
    /// blocked until the owner recovers.
    pub frozen_at: Option<Timestamp>,
}

impl Account {
    /// Whether the account may complete a login (status and verified email).
    pub fn can_sign_in(&self) -> bool {
        self.status == AccountStatus::Active
    }

    /// Whether the account is frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen_at.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_validated() {
        assert_eq!(Email::parse("  Alice@Example.COM ").map(|e| e.to_string()), Ok("alice@example.com".into()));
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "alice@example",
            "alice@@example.com",
            "a b@example.com",
            "alice@exa_mple.com",
            "alice@-example.com",
            "alice@example..com",
            "al\nice@example.com",
        ] {
            assert_eq!(Email::parse(bad), Err(EmailError::Invalid), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert_eq!(Email::parse(&long), Err(EmailError::Invalid));
        assert!(Email::parse("first.last+tag@sub.example.co.kr").is_ok());
    }

    #[test]
    fn unknown_status_fails_closed() {
        assert_eq!(AccountStatus::from_stored("active"), AccountStatus::Active);
        assert_eq!(AccountStatus::from_stored("suspended?"), AccountStatus::Disabled);
    }
}
