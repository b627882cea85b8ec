//! Second factors: TOTP (RFC 6238) and backup codes. The overview and the factor vocabulary
//! follow with the remaining submodules.

pub mod backup_codes;
pub mod base32;
pub mod otpauth;
pub mod totp;
