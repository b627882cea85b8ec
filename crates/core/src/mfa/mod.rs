//! Placeholder: filled in by the mfa work.
