//! Anti-phishing URL checker: is this link the exchange, an imitation of it, or neither?
//!
//! Building blocks so far: [`punycode`] (RFC 3492), to see `xn--` labels as the user does, and
//! [`confusables`], to tell when two names look alike.

pub mod confusables;
pub mod punycode;
