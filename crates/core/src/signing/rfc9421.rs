//! gatehouse's native scheme: HTTP Message Signatures (RFC 9421) with `hmac-sha256` or
//! `ed25519`, and the body bound through `Content-Digest` (RFC 9530).
//!
//! What it verifies: one signature (one `Signature-Input` member, the same label in
//! `Signature`; both fields parsed as full RFC 8941 dictionaries) covering at least
//! `"@method" "@authority" "@path" "@query"` and, when there is a body, `"content-digest"`;
//! parameters `created`, `keyid` and a `nonce` of 16..=64 bytes (`expires`, `alg`, `tag`
//! optional; anything else is refused). The signature base is rebuilt exactly per RFC 9421
//! §2.5 — one `"<component>": <value>` line per covered component in the signer's order, then
//! the `"@signature-params"` line holding the *serialization of the parsed* parameters (§2.3),
//! no trailing newline — and checked with the key (`alg`, when present, must match the key's
//! kind). `created` must lie in `[now − max_age, now + max_future]` (default 300 s / 5 s) and
//! `expires`, when present, must not have passed. `Content-Digest` must carry `sha-256` and/or
//! `sha-512` and every one present must match the raw body.
//!
//! Attacks stopped: everything the exchange dialects leave open — a signature is bound to the
//! method, authority, path, query, body, time and a nonce, so it cannot be moved to another
//! endpoint (`GET` → `DELETE`), another host or another body, and the `(keyid, nonce)` replay
//! key makes it single-use. Header-value injection into the base (a CR/LF in a covered field)
//! is refused, as are duplicated `Signature`/`Signature-Input`/`Content-Digest` lines,
//! duplicated components, dictionary keys and parameters, and fields over
//! [`MAX_SIGNATURE_FIELD_LEN`].
//!
//! [`signature_base`] accepts any covered-component list (the RFC's own B.2.5/B.2.6 examples
//! cover `date` and `content-type` and carry no nonce); only [`parse`] enforces our required
//! set. Unsupported (refused with `malformed_signature`): component parameters (`;sf`, `;key`,
//! `;req`, …), `@target-uri`, `@scheme`, `@query-param`, `@status`, and multiple signatures.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::content_digest::ContentDigest;
use super::sf::{self, BareItem, Member};
use super::{
    Denial, Dialect, Header, InlineStr, MAX_BODY_LEN, MAX_KEY_ID_LEN, MAX_NONCE_LEN, MAX_SIGNATURE_FIELD_LEN,
    MAX_TARGET_LEN, RawRequest, ReplayKey, Verified, VerifyKey, json_string, key, key::KeyKind, key::SignatureAlg,
    windowed_retention,
};
use crate::clock::{Span, Timestamp};

/// Components every request must cover.
pub const REQUIRED_COMPONENTS: [&str; 4] = ["@method", "@authority", "@path", "@query"];
/// Shortest accepted `nonce` parameter, in bytes (≥ 96 bits of base64, R67).
pub const MIN_NONCE_LEN: usize = 16;
/// Most covered components.
const MAX_COMPONENTS: usize = 32;

/// RFC 9421 verification parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rfc9421Policy {
    /// Oldest accepted `created`, relative to now (default 300 s).
    pub max_age: Span,
    /// Furthest-future accepted `created` (default 5 s).
    pub max_future: Span,
    /// Worst clock difference between instances, added to the replay retention (F5).
    pub max_instance_skew: Span,
    /// Extra replay retention (F5's margin).
    pub retention_margin: Span,
}

impl Default for Rfc9421Policy {
    fn default() -> Self {
        Self {
            max_age: Span::secs(300),
            max_future: Span::secs(5),
            max_instance_skew: Span::secs(1),
            retention_margin: Span::secs(2),
        }
    }
}

impl Rfc9421Policy {
    /// Checks the numbers; returns what is wrong.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.max_age <= Span::ZERO || self.max_age > Span::hours(1) {
            return Err("signing.rfc9421.max_age must be in (0, 1 h]");
        }
        if self.max_future < Span::ZERO || self.max_future > Span::secs(60) {
            return Err("signing.rfc9421.max_future must be in [0, 60 s]");
        }
        if self.max_instance_skew < Span::ZERO || self.retention_margin < Span::ZERO {
            return Err("signing.rfc9421 skew and margin must not be negative");
        }
        Ok(())
    }
}

/// An RFC 9421 failure; body `{"error":{"code":…,"message":…}}`. The `&'static str` reasons
/// are for logs only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rfc9421Error {
    /// 401 `signature_required`: neither `Signature-Input` nor `Signature` is present.
    #[error("signature_required")]
    SignatureRequired,
    /// 400 `malformed_signature`: the signature fields are malformed, duplicated or too long.
    #[error("malformed_signature: {0}")]
    Malformed(&'static str),
    /// 400 `missing_component`: a required component or parameter is not covered.
    #[error("missing_component: {0}")]
    MissingComponent(&'static str),
    /// 400 `unsupported_algorithm`: `alg` names an algorithm we do not accept.
    #[error("unsupported_algorithm")]
    UnsupportedAlgorithm,
    /// 400 `malformed_digest`: `Content-Digest` is malformed or has no supported algorithm.
    #[error("malformed_digest: {0}")]
    MalformedDigest(&'static str),
    /// 401 `invalid_signature`: bad signature, unknown key, or `alg` not matching the key.
    #[error("invalid_signature: {0}")]
    InvalidSignature(&'static str),
    /// 401 `digest_mismatch`: `Content-Digest` does not match the body.
    #[error("digest_mismatch")]
    DigestMismatch,
    /// 401 `signature_expired`: `created` too old, or `expires` passed.
    #[error("signature_expired: {0}")]
    Expired(&'static str),
    /// 401 `signature_not_yet_valid`: `created` too far in the future.
    #[error("signature_not_yet_valid")]
    NotYetValid,
    /// 401 `replay`: the `(keyid, nonce)` was already used.
    #[error("replay")]
    Replayed,
    /// 401 `key_expired`: the key is expired or revoked.
    #[error("key_expired")]
    KeyExpired,
    /// 403 `ip_not_allowed`: the client address is outside the key's allowlist (R69).
    #[error("ip_not_allowed")]
    IpNotAllowed,
    /// 403 `insufficient_scope`: the key lacks the permission (R64).
    #[error("insufficient_scope")]
    InsufficientScope,
}

impl Rfc9421Error {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::SignatureRequired => "signature_required",
            Self::Malformed(_) => "malformed_signature",
            Self::MissingComponent(_) => "missing_component",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::MalformedDigest(_) => "malformed_digest",
            Self::InvalidSignature(_) => "invalid_signature",
            Self::DigestMismatch => "digest_mismatch",
            Self::Expired(_) => "signature_expired",
            Self::NotYetValid => "signature_not_yet_valid",
            Self::Replayed => "replay",
            Self::KeyExpired => "key_expired",
            Self::IpNotAllowed => "ip_not_allowed",
            Self::InsufficientScope => "insufficient_scope",
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> &'static str {
        match self {
            Self::SignatureRequired => "This endpoint requires an HTTP message signature (RFC 9421).",
            Self::Malformed(_) => "The Signature-Input or Signature header is malformed.",
            Self::MissingComponent(_) => "The signature does not cover every required component and parameter.",
            Self::UnsupportedAlgorithm => "The signature algorithm is not supported.",
            Self::MalformedDigest(_) => "The Content-Digest header is malformed or names no supported algorithm.",
            Self::InvalidSignature(_) => "The request signature is not valid.",
            Self::DigestMismatch => "The Content-Digest does not match the body.",
            Self::Expired(_) => "The signature is too old or has expired.",
            Self::NotYetValid => "The signature was created in the future.",
            Self::Replayed => "This signed request was already received.",
            Self::KeyExpired => "The API key has expired or was revoked.",
            Self::IpNotAllowed => "The client address is not allowed for this API key.",
            Self::InsufficientScope => "The API key does not permit this operation.",
        }
    }

    /// The HTTP status: 400 malformed, 401 signature/window/replay, 403 IP/scope.
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) | Self::MissingComponent(_) | Self::UnsupportedAlgorithm | Self::MalformedDigest(_) => {
                400
            }
            Self::IpNotAllowed | Self::InsufficientScope => 403,
            _ => 401,
        }
    }

    /// The response body.
    pub fn body(&self) -> String {
        format!(r#"{{"error":{{"code":{},"message":{}}}}}"#, json_string(self.code()), json_string(self.message()))
    }
}

impl From<Denial> for Rfc9421Error {
    fn from(d: Denial) -> Self {
        match d {
            Denial::Replayed => Self::Replayed,
            Denial::KeyExpired => Self::KeyExpired,
            Denial::IpNotAllowed => Self::IpNotAllowed,
            Denial::OutOfScope => Self::InsufficientScope,
        }
    }
}

/// One member of a `Signature-Input` field: a label, the covered components in order, and the
/// signature parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInput {
    label: String,
    components: Vec<String>,
    serialized: String,
}

/// A validated `Signature-Input` member borrowing the field text: every item of `list` is a
/// plain, unique, valid component name (what [`SignatureInput`] holds, without copying).
struct InputMember<'a> {
    label: Cow<'a, str>,
    list: sf::InnerList<'a>,
}

impl<'a> InputMember<'a> {
    /// Checks a dictionary member: an inner list of at most [`MAX_COMPONENTS`] strings with
    /// no parameters, each a valid component identifier, none twice.
    fn check(member: &Member<'_>) -> Result<(), Rfc9421Error> {
        use Rfc9421Error::Malformed;
        let Member::InnerList(list) = member else {
            return Err(Malformed("member is not an inner list"));
        };
        if list.items.len() > MAX_COMPONENTS {
            return Err(Malformed("too many components"));
        }
        for (n, item) in list.items.iter().enumerate() {
            let BareItem::String(name) = &item.bare else {
                return Err(Malformed("component is not a string"));
            };
            if !item.params.is_empty() {
                return Err(Malformed("component parameters are not supported"));
            }
            if !is_component_name(name) {
                return Err(Malformed("invalid component identifier"));
            }
            let earlier = list.items.get(..n).unwrap_or_default();
            if earlier.iter().any(|e| matches!(&e.bare, BareItem::String(x) if x == name)) {
                return Err(Malformed("duplicate component"));
            }
        }
        Ok(())
    }

    /// Every member of a `Signature-Input` field value, checked.
    fn parse_all(value: &'a [u8]) -> Result<Vec<Self>, Rfc9421Error> {
        use Rfc9421Error::Malformed;
        if value.len() > MAX_SIGNATURE_FIELD_LEN {
            return Err(Malformed("Signature-Input too long"));
        }
        let dict = sf::parse_dictionary(value).map_err(|_| Malformed("Signature-Input is not a dictionary"))?;
        for (_, member) in &dict {
            Self::check(member)?;
        }
        Ok(dict
            .into_iter()
            .filter_map(|(label, member)| match member {
                Member::InnerList(list) => Some(Self { label, list }),
                Member::Item(_) => None,
            })
            .collect())
    }

    /// The covered component identifiers, in order.
    fn components(&self) -> impl Iterator<Item = &str> {
        self.list.items.iter().filter_map(|item| match &item.bare {
            BareItem::String(name) => Some(name.as_ref()),
            _ => None,
        })
    }

    fn covers(&self, component: &str) -> bool {
        self.components().any(|c| c == component)
    }

    fn param(&self, name: &str) -> Option<&BareItem<'a>> {
        self.list.params.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

impl SignatureInput {
    /// Parses every member of a `Signature-Input` field value. Components must be plain
    /// strings (no component parameters), unique, lower-case.
    pub fn parse_field(value: &[u8]) -> Result<Vec<Self>, Rfc9421Error> {
        Ok(InputMember::parse_all(value)?
            .into_iter()
            .map(|m| Self {
                label: m.label.clone().into_owned(),
                components: m.components().map(str::to_owned).collect(),
                // The `@signature-params` value is the serialization of what was parsed.
                serialized: sf::serialize_inner_list(&m.list),
            })
            .collect())
    }

    /// The dictionary label (`sig1`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The covered component identifiers, in order.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// The `@signature-params` value: the RFC 8941 serialization of the inner list and its
    /// parameters (RFC 9421 §2.3).
    pub fn signature_params(&self) -> &str {
        &self.serialized
    }
}

fn is_component_name(name: &str) -> bool {
    let body = name.strip_prefix('@').unwrap_or(name);
    !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Appends the value of component `name` of `req` (RFC 9421 §2.1, §2.2).
fn component_value(req: &RawRequest<'_>, name: &str, out: &mut Vec<u8>) -> Result<(), Rfc9421Error> {
    use Rfc9421Error::Malformed;
    match name {
        "@method" => out.extend_from_slice(req.method.as_bytes()),
        "@authority" => {
            let start = out.len();
            out.extend_from_slice(req.authority.as_bytes());
            out.get_mut(start..).unwrap_or_default().make_ascii_lowercase();
        }
        "@path" => match req.path() {
            "" => out.push(b'/'),
            p if p.starts_with('/') => out.extend_from_slice(p.as_bytes()),
            _ => return Err(Malformed("request target is not in origin form")),
        },
        "@query" => {
            out.push(b'?');
            out.extend_from_slice(req.query().unwrap_or_default().as_bytes());
        }
        "@request-target" => out.extend_from_slice(req.target.as_bytes()),
        n if n.starts_with('@') => return Err(Malformed("unsupported derived component")),
        field => {
            let mut found = false;
            for v in req.header_values(field) {
                if found {
                    out.extend_from_slice(b", ");
                }
                found = true;
                let v = v.trim_ascii();
                if v.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                    return Err(Malformed("control character in a covered field"));
                }
                out.extend_from_slice(v);
            }
            if !found {
                return Err(Malformed("covered field is absent"));
            }
        }
    }
    Ok(())
}

/// Builds the signature base of `req` for `input` (RFC 9421 §2.5), for any component list.
pub fn signature_base(req: &RawRequest<'_>, input: &SignatureInput) -> Result<Vec<u8>, Rfc9421Error> {
    let params = input.signature_params();
    build_base(req, input.components.iter().map(String::as_str), input.components.len(), params.len(), |base| {
        base.extend_from_slice(params.as_bytes());
    })
}

/// The signature base: one `"<name>": <value>` line per component, then the
/// `"@signature-params"` line whose value `params` appends (`params_len` sizes the buffer).
fn build_base<'c>(
    req: &RawRequest<'_>,
    components: impl Iterator<Item = &'c str>,
    count: usize,
    params_len: usize,
    params: impl FnOnce(&mut Vec<u8>),
) -> Result<Vec<u8>, Rfc9421Error> {
    let mut base = Vec::with_capacity(64 * count + params_len + 24);
    for name in components {
        // Identifiers were validated by `InputMember::check` (token characters only), so their
        // sf-string serialization is the name in quotes.
        base.push(b'"');
        base.extend_from_slice(name.as_bytes());
        base.extend_from_slice(b"\": ");
        component_value(req, name, &mut base)?;
        base.push(b'\n');
    }
    base.extend_from_slice(b"\"@signature-params\": ");
    params(&mut base);
    Ok(base)
}

/// The `alg` parameter values we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rfc9421Alg {
    /// `hmac-sha256`.
    HmacSha256,
    /// `ed25519`.
    Ed25519,
}

/// A parsed RFC 9421 request: signature located, base built, nothing verified yet.
#[derive(Debug, Clone)]
pub struct Rfc9421Request<'a> {
    keyid: InlineStr<MAX_KEY_ID_LEN>,
    nonce: InlineStr<MAX_NONCE_LEN>,
    created: i64,
    expires: Option<i64>,
    alg: Option<Rfc9421Alg>,
    signature: Vec<u8>,
    base: Vec<u8>,
    body: &'a [u8],
    digest: Option<ContentDigest>,
}

impl Rfc9421Request<'_> {
    /// The `keyid` parameter: the key to look up.
    pub fn key_id(&self) -> &str {
        self.keyid.as_str()
    }

    /// The `nonce` parameter.
    pub fn nonce(&self) -> &str {
        self.nonce.as_str()
    }

    /// The rebuilt signature base.
    pub fn signature_base(&self) -> &[u8] {
        &self.base
    }
}

fn signature_field<'a>(req: &RawRequest<'a>, name: &str) -> Result<Option<&'a [u8]>, Rfc9421Error> {
    match req.header(name) {
        Header::Absent => Ok(None),
        Header::Repeated => Err(Rfc9421Error::Malformed("repeated signature field")),
        Header::One(v) if v.len() > MAX_SIGNATURE_FIELD_LEN => Err(Rfc9421Error::Malformed("signature field too long")),
        Header::One(v) => Ok(Some(v)),
    }
}

/// Phase 1: parses the signature fields, enforces the required coverage and parameters and
/// builds the signature base. No key material.
pub fn parse<'a>(req: &RawRequest<'a>) -> Result<Rfc9421Request<'a>, Rfc9421Error> {
    use Rfc9421Error::{Malformed, MissingComponent};
    let (input_field, sig_field) = match (signature_field(req, "signature-input")?, signature_field(req, "signature")?)
    {
        (None, None) => return Err(Rfc9421Error::SignatureRequired),
        (Some(i), Some(s)) => (i, s),
        _ => {
            return Err(Malformed("Signature-Input and Signature must come together"));
        }
    };
    if req.target.len() > MAX_TARGET_LEN || req.body.len() > MAX_BODY_LEN {
        return Err(Malformed("request too large"));
    }
    let mut inputs = InputMember::parse_all(input_field)?;
    let input = match (inputs.pop(), inputs.is_empty()) {
        (Some(input), true) => input,
        _ => return Err(Malformed("exactly one signature is supported")),
    };
    let mut sigs = sf::parse_dictionary(sig_field).map_err(|_| Malformed("Signature is not a dictionary"))?;
    let signature = match (sigs.pop(), sigs.is_empty()) {
        (Some((label, Member::Item(sf::Item { bare: BareItem::ByteSeq(sig), params }))), true)
            if label == input.label && params.is_empty() =>
        {
            sig
        }
        _ => {
            return Err(Malformed("Signature must hold exactly the Signature-Input label"));
        }
    };

    for (name, _) in &input.list.params {
        if !matches!(name.as_ref(), "created" | "expires" | "nonce" | "keyid" | "alg" | "tag") {
            return Err(Malformed("unknown signature parameter"));
        }
    }
    let int = |name| match input.param(name) {
        None => Ok(None),
        Some(BareItem::Integer(v)) if *v >= 0 => Ok(Some(*v)),
        Some(_) => Err(Malformed("created/expires must be non-negative integers")),
    };
    let string = |name| match input.param(name) {
        None => Ok(None),
        Some(BareItem::String(s)) => Ok(Some(s.as_ref())),
        Some(_) => Err(Malformed("nonce/keyid/alg/tag must be strings")),
    };
    let created = int("created")?.ok_or(MissingComponent("created"))?;
    let expires = int("expires")?;
    if expires.is_some_and(|e| e < created) {
        return Err(Malformed("expires before created"));
    }
    let nonce = string("nonce")?.ok_or(MissingComponent("nonce"))?;
    if !(MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce.len()) {
        return Err(Malformed("nonce must be 16 to 64 bytes"));
    }
    let nonce = InlineStr::new(nonce).ok_or(Malformed("nonce must be 16 to 64 bytes"))?;
    let keyid = string("keyid")?.ok_or(MissingComponent("keyid"))?;
    if keyid.is_empty() || keyid.len() > MAX_KEY_ID_LEN {
        return Err(Malformed("keyid length"));
    }
    let keyid = InlineStr::new(keyid).ok_or(Malformed("keyid length"))?;
    let alg = match string("alg")? {
        None => None,
        Some("hmac-sha256") => Some(Rfc9421Alg::HmacSha256),
        Some("ed25519") => Some(Rfc9421Alg::Ed25519),
        Some(_) => return Err(Rfc9421Error::UnsupportedAlgorithm),
    };
    string("tag")?;

    if let Some(missing) = REQUIRED_COMPONENTS.into_iter().find(|c| !input.covers(c)) {
        return Err(MissingComponent(missing));
    }
    let digest = if !req.body.is_empty() || input.covers("content-digest") {
        if !input.covers("content-digest") {
            return Err(MissingComponent("content-digest"));
        }
        Some(ContentDigest::parse(req).map_err(Rfc9421Error::MalformedDigest)?)
    } else {
        None
    };
    let base = build_base(req, input.components(), input.list.items.len(), 160, |base| {
        sf::serialize_inner_list_into(base, &input.list);
    })?;
    Ok(Rfc9421Request { keyid, nonce, created, expires, alg, signature, base, body: req.body, digest })
}

fn check_window(r: &Rfc9421Request<'_>, now: Timestamp, policy: &Rfc9421Policy) -> Result<(), Rfc9421Error> {
    let now = now.as_millis();
    let created = r.created.saturating_mul(1000);
    if now.saturating_sub(created) > policy.max_age.as_millis() {
        return Err(Rfc9421Error::Expired("created too old"));
    }
    if created.saturating_sub(now) > policy.max_future.as_millis() {
        return Err(Rfc9421Error::NotYetValid);
    }
    if r.expires.is_some_and(|e| now >= e.saturating_mul(1000)) {
        return Err(Rfc9421Error::Expired("expires passed"));
    }
    Ok(())
}

fn signature_alg(r: &Rfc9421Request<'_>, kind: KeyKind) -> Option<SignatureAlg> {
    match (r.alg, kind) {
        (None | Some(Rfc9421Alg::HmacSha256), KeyKind::Hmac) => Some(SignatureAlg::HmacSha256),
        (None | Some(Rfc9421Alg::Ed25519), KeyKind::Ed25519) => Some(SignatureAlg::Ed25519),
        _ => None,
    }
}

/// Phase 3: checks the window at `now`, the signature with `key`, then `Content-Digest`. On
/// success the replay key is `(keyid, nonce)`, retained for the whole acceptance window.
pub fn verify(
    r: &Rfc9421Request<'_>,
    key: &VerifyKey,
    now: Timestamp,
    policy: &Rfc9421Policy,
) -> Result<Verified, Rfc9421Error> {
    check_window(r, now, policy)?;
    let alg = signature_alg(r, key.kind()).ok_or(Rfc9421Error::InvalidSignature("alg does not match the key"))?;
    if !key.verify_signature(alg, &r.base, &r.signature) {
        return Err(Rfc9421Error::InvalidSignature("signature mismatch"));
    }
    if r.digest.as_ref().is_some_and(|d| !d.matches(r.body)) {
        return Err(Rfc9421Error::DigestMismatch);
    }
    Ok(Verified {
        dialect: Dialect::Rfc9421,
        key_id: r.key_id().to_owned(),
        replay_key: ReplayKey::derive(Dialect::Rfc9421.as_str(), &[r.key_id().as_bytes(), r.nonce().as_bytes()]),
        retention: windowed_retention(
            policy.max_age,
            policy.max_future,
            policy.max_instance_skew,
            policy.retention_margin,
        ),
        binds_method_and_path: true,
    })
}

/// Phase 2 for an unknown `keyid`: verifies against a dummy key of the claimed (or
/// signature-length-implied) kind, then answers `invalid_signature`.
pub fn reject_unknown_key(r: &Rfc9421Request<'_>) -> Rfc9421Error {
    let ed = r.alg == Some(Rfc9421Alg::Ed25519) || (r.alg.is_none() && r.signature.len() == 64);
    let dummy = if ed {
        key::dummy_ed25519().map(|k| (k, SignatureAlg::Ed25519))
    } else {
        key::dummy_hmac().map(|k| (k, SignatureAlg::HmacSha256))
    };
    if let Some((k, alg)) = dummy {
        std::hint::black_box(k.verify_signature(alg, &r.base, &r.signature));
    }
    Rfc9421Error::InvalidSignature("unknown keyid")
}

#[cfg(test)]
mod tests;
