//! Proof of possession in the server (issue 9, R58–R62): DPoP-bound and certificate-bound
//! sessions at the token endpoints, proof checks on every use of a bound access token, and
//! the audit and risk signals of every refused proof.
//!
//! The checks themselves are pure and live in [`gatehouse_core::pop`]; this module feeds them
//! what only the server knows and acts on the result:
//!
//! | step | where | what the server adds |
//! |---|---|---|
//! | login `POST /sessions` | [`PopCtx::login_binding`] | a `DPoP` proof binds the session to its key (`cnf.jkt`); a client certificate on the connection binds it to the certificate (`cnf["x5t#S256"]`) |
//! | refresh `POST /sessions/refresh` | [`PopCtx::refresh_binding`] | a bound family needs a proof with **the same** key (or the same certificate); another key revokes the family, audited (R60) |
//! | every authenticated request | [`check_access`] | a DPoP-bound token needs the `DPoP` scheme and a fresh proof with `ath`; as `Bearer` it is refused; a certificate-bound token needs the certificate on the connection (R61) |
//!
//! Invariants:
//! * `htu` is built from the configured public origin and the request path, never from a
//!   client-supplied `Host` or `X-Forwarded-*` (RFC 9449 §4.3 check 9).
//! * The `jti` is recorded (Redis `SET NX PX` when Redis is configured, else the database's
//!   replay table: both shared by every instance) only **after** every other check passed, so
//!   garbage cannot burn a legitimate proof (R59). A store that cannot answer refuses (503).
//! * When server nonces are configured every proof must carry a current one: there is no
//!   path that accepts a proof without a nonce (no downgrade, R59).
//! * A certificate is taken from the TLS connection, or from the configured header only when
//!   the socket peer is a trusted proxy; a header from anyone else is ignored (R61).
//! * Every refusal is audited ([`EventKind::PopProofRejected`]) and counted by the risk engine
//!   as a strong signal.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderName;
use axum::http::request::Parts;
use gatehouse_core::audit::{AuditEvent, EventKind, Outcome};
use gatehouse_core::clock::{Span, Timestamp};
use gatehouse_core::ids::{SessionId, UserId};
use gatehouse_core::pop::{
    CertBinding, Confirmation, DpopError, DpopNonces, DpopPolicy, DpopVerifier, Endpoint, NonceRule, ProofContext,
    VerifiedProof, cert_from_proxy_header,
};
use gatehouse_core::secret::{SecretBytes, TokenHash};
use gatehouse_core::session::Session;
use gatehouse_core::store::{NewSession, SideEffects};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::auth::Via;
use crate::error::{ApiError, ApiResult, ErrorCode, request_id};
use crate::http::ClientCtx;
use crate::state::AppState;

/// The `DPoP` request header and the `DPoP-Nonce` response header (RFC 9449 §4.1, §8).
pub const HEADER_DPOP: &str = "dpop";
/// The server-nonce response header.
pub const HEADER_DPOP_NONCE: &str = "dpop-nonce";

/// `[pop]`: proof-of-possession settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PopConfig {
    /// DPoP proof rules (`iat` window, `jti` bound, algorithms); safe defaults (R59).
    pub dpop: DpopPolicy,
    /// Require a server nonce in every DPoP proof (RFC 9449 §8). The nonce is stateless,
    /// derived from the server's secret, so every instance accepts every other's.
    pub require_nonce: bool,
    /// How long one nonce bucket lasts, in seconds (a nonce lives one to two buckets).
    pub nonce_bucket_secs: i64,
    /// Validated client keys cached by the verifier.
    pub key_cache: usize,
    /// Header a TLS-terminating proxy puts the client certificate in (for example
    /// `x-client-cert` with nginx's `$ssl_client_escaped_cert`). Believed only from
    /// `server.trusted_proxies`. Empty: only certificates from gatehouse's own TLS.
    pub cert_header: String,
    /// Issue only sender-constrained sessions (R62): a login without a DPoP proof or a client
    /// certificate is refused. For deployments whose session tokens reach trading or
    /// withdrawal operations.
    pub require_binding: bool,
}

impl Default for PopConfig {
    fn default() -> Self {
        Self {
            dpop: DpopPolicy::default(),
            require_nonce: false,
            nonce_bucket_secs: 300,
            key_cache: DpopVerifier::DEFAULT_KEY_CACHE,
            cert_header: String::new(),
            require_binding: false,
        }
    }
}

impl PopConfig {
    /// Checks the numbers; returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        self.dpop.validate().map_err(|m| format!("pop.{m}"))?;
        if !(10..=3600).contains(&self.nonce_bucket_secs) {
            return Err("pop.nonce_bucket_secs must be 10..=3600".into());
        }
        if !(16..=1_000_000).contains(&self.key_cache) {
            return Err("pop.key_cache must be 16..=1000000".into());
        }
        if !self.cert_header.is_empty() && HeaderName::from_bytes(self.cert_header.as_bytes()).is_err() {
            return Err("pop.cert_header must be a header name".into());
        }
        Ok(())
    }
}

/// The verifier, the nonce source and the certificate header, shared by every request.
pub struct PopService {
    verifier: DpopVerifier,
    nonces: Option<DpopNonces>,
    cert_header: Option<HeaderName>,
    require_binding: bool,
}

impl PopService {
    /// Builds the service. The nonce key is derived from `server_secret` (shared by every
    /// instance through the database), so no extra secret needs configuring.
    pub fn new(cfg: &PopConfig, server_secret: &SecretBytes) -> anyhow::Result<Self> {
        cfg.validate().map_err(|e| anyhow::anyhow!(e))?;
        let nonces = if cfg.require_nonce {
            let mut mac = <Hmac<Sha256>>::new_from_slice(server_secret.expose())
                .map_err(|e| anyhow::anyhow!("dpop nonce key: {e}"))?;
            mac.update(b"gatehouse dpop nonce v1");
            let key = SecretBytes::new(mac.finalize().into_bytes().to_vec());
            Some(DpopNonces::new(&key, Span::secs(cfg.nonce_bucket_secs)).map_err(|e| anyhow::anyhow!("{e:?}"))?)
        } else {
            None
        };
        let cert_header = match cfg.cert_header.as_str() {
            "" => None,
            h => Some(HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())?),
        };
        Ok(Self {
            verifier: DpopVerifier::new(cfg.dpop.clone(), cfg.key_cache),
            nonces,
            cert_header,
            require_binding: cfg.require_binding,
        })
    }

    /// The nonce to announce at `now`, when nonces are required.
    pub fn nonce(&self, now: Timestamp) -> Option<String> {
        self.nonces.as_ref().map(|n| n.nonce_for(now))
    }

    fn nonce_rule(&self) -> NonceRule<'_> {
        match &self.nonces {
            Some(n) => NonceRule::Issued(n),
            None => NonceRule::None,
        }
    }

    /// The `algs` parameter of a `DPoP` challenge.
    fn algs(&self) -> String {
        self.verifier.policy().algs()
    }
}

/// The client certificate of a TLS connection (DER), attached to each request by the
/// accept loop when the client presented one that chains to `tls.client_ca`.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Arc<Vec<u8>>);

/// What a request offers as proof of possession: its `DPoP` header lines and its client
/// certificate. Extracted before any handler logic; never fails.
#[derive(Debug, Clone)]
pub struct PopCtx {
    method: String,
    path: String,
    dpop: Vec<Vec<u8>>,
    cert: Option<Arc<Vec<u8>>>,
}

impl FromRequestParts<AppState> for PopCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts, state))
    }
}

/// Where a proof was checked, for the audit event.
#[derive(Debug, Clone, Copy)]
enum Flow {
    Login,
    Refresh,
    Resource,
}

impl Flow {
    fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Refresh => "refresh",
            Self::Resource => "resource",
        }
    }
}

/// Who the refused proof concerns, for the audit event and the risk engine.
#[derive(Debug, Clone, Copy, Default)]
struct Subject {
    user: Option<UserId>,
    session: Option<SessionId>,
}

impl PopCtx {
    /// Reads the proof material of a request.
    pub fn from_parts(parts: &Parts, state: &AppState) -> Self {
        let dpop = parts.headers.get_all(HEADER_DPOP).iter().map(|v| v.as_bytes().to_vec()).collect();
        let cert = match parts.extensions.get::<PeerCertificate>() {
            Some(c) => Some(c.0.clone()),
            None => proxy_cert(parts, state),
        };
        Self { method: parts.method.as_str().to_owned(), path: parts.uri.path().to_owned(), dpop, cert }
    }

    /// Whether the request carries a `DPoP` header.
    pub fn has_proof(&self) -> bool {
        !self.dpop.is_empty()
    }

    fn htu(&self, state: &AppState) -> String {
        format!("{}{}", state.config.server.public_origin, self.path)
    }

    /// Runs RFC 9449 §4.3 on the request's proof, then records its `jti`; every refusal is
    /// audited and counted.
    async fn verify(
        &self,
        state: &AppState,
        client: &ClientCtx,
        flow: Flow,
        access_token: Option<&str>,
        expected_jkt: Option<&str>,
        who: Subject,
    ) -> Result<VerifiedProof, Refusal> {
        let now = state.clock.now();
        let htu = self.htu(state);
        let values: Vec<&[u8]> = self.dpop.iter().map(Vec::as_slice).collect();
        let ctx = ProofContext {
            method: &self.method,
            htu: &htu,
            now,
            access_token,
            expected_jkt,
            nonce: state.pop.nonce_rule(),
        };
        let proof = match state.pop.verifier.verify(&values, &ctx) {
            Ok(p) => p,
            Err(e) => {
                audit_refusal(state, client, flow, who, e.code(), e.check()).await?;
                return Err(Refusal::Proof(e));
            }
        };
        if !record_jti(state, &proof, now).await? {
            audit_refusal(state, client, flow, who, "dpop_replayed", None).await?;
            return Err(Refusal::Replayed);
        }
        Ok(proof)
    }

    /// Login: binds the new session to the proof's key and/or the connection's certificate.
    /// `None`: the session is unbound (no proof, no certificate).
    pub async fn login_binding(&self, state: &AppState, client: &ClientCtx) -> ApiResult<Option<Confirmation>> {
        let mut cnf = Confirmation::default();
        if self.has_proof() {
            let proof = self
                .verify(state, client, Flow::Login, None, None, Subject::default())
                .await
                .map_err(|r| r.into_error(state, Endpoint::Token))?;
            cnf.jkt = Some(proof.jkt().clone());
        }
        cnf.x5t_s256 = self.cert.as_deref().map(|der| CertBinding::from_der(der));
        if !cnf.is_sender_constrained() && state.pop.require_binding {
            // R62: this deployment never issues an unbound token.
            audit_refusal(state, client, Flow::Login, Subject::default(), "binding_required", None).await?;
            return Err(ApiError::new(ErrorCode::InvalidDpopProof)
                .message(
                    "This server issues only sender-constrained tokens: send a DPoP proof or a client certificate.",
                )
                .details(serde_json::json!({ "dpop_error": "binding_required" })));
        }
        Ok(cnf.is_sender_constrained().then_some(cnf))
    }

    /// Refresh: a bound family needs a proof made with its key (and its certificate). A proof
    /// or certificate of **another** key revokes the family (audited) and answers
    /// `invalid_grant`; a missing or broken proof is refused without revoking (anyone holding
    /// the token could otherwise end the owner's session, but that is all they could do).
    /// Returns the family's binding (`None`: unbound).
    pub async fn refresh_binding(
        &self,
        state: &AppState,
        client: &ClientCtx,
        presented: TokenHash,
    ) -> ApiResult<Option<Confirmation>> {
        let Some(bound) = state.store.find_refresh_binding(presented).await? else {
            if self.has_proof() {
                // An unbound family stays unbound; a proof sent with it must still be sound.
                self.verify(state, client, Flow::Refresh, None, None, Subject::default())
                    .await
                    .map_err(|r| r.into_error(state, Endpoint::Token))?;
            }
            return Ok(None);
        };
        let who = Subject { user: Some(bound.user_id), session: Some(bound.session_id) };
        if let Some(jkt) = &bound.cnf.jkt {
            match self.verify(state, client, Flow::Refresh, None, Some(jkt.as_str()), who).await {
                Ok(_) => {}
                Err(Refusal::Proof(DpopError::JktMismatch)) => {
                    revoke_family(state, client, &bound, "dpop_key_mismatch").await?;
                    return Err(ApiError::new(ErrorCode::InvalidGrant));
                }
                Err(r) => return Err(r.into_error(state, Endpoint::Token)),
            }
        }
        if let Some(x5t) = &bound.cnf.x5t_s256 {
            match self.cert.as_deref() {
                Some(der) if x5t.matches(der) => {}
                Some(_) => {
                    audit_refusal(state, client, Flow::Refresh, who, "cert_mismatch", None).await?;
                    revoke_family(state, client, &bound, "client_cert_mismatch").await?;
                    return Err(ApiError::new(ErrorCode::InvalidGrant));
                }
                None => {
                    audit_refusal(state, client, Flow::Refresh, who, "cert_missing", None).await?;
                    return Err(ApiError::new(ErrorCode::CertBindingRejected));
                }
            }
        }
        Ok(Some(bound.cnf))
    }
}

/// The certificate a trusted TLS-terminating proxy forwarded, if configured, present and
/// sound. From any other peer the header is ignored (R61).
fn proxy_cert(parts: &Parts, state: &AppState) -> Option<Arc<Vec<u8>>> {
    let name = state.pop.cert_header.as_ref()?;
    let value = parts.headers.get(name)?;
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())?;
    if !state.trusted_proxies.is_trusted(peer) {
        return None;
    }
    match cert_from_proxy_header(value.as_bytes()) {
        Ok(der) => Some(Arc::new(der)),
        Err(e) => {
            tracing::warn!(request_id = %request_id(), error = e.code(), "forwarded client certificate refused");
            None
        }
    }
}

/// Why a proof was refused.
#[derive(Debug)]
enum Refusal {
    /// One of the RFC 9449 §4.3 checks.
    Proof(DpopError),
    /// The `jti` was seen before (§11.1).
    Replayed,
    /// The store or Redis failed: already an answer (503).
    Api(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl Refusal {
    fn into_error(self, state: &AppState, at: Endpoint) -> ApiError {
        let (code, oauth, check, bad_request) = match &self {
            Self::Api(e) => return e.clone(),
            Self::Proof(e) => (e.code(), e.oauth_error(at), e.check(), e.status(at) == 400),
            Self::Replayed => ("dpop_replayed", "invalid_dpop_proof", None, false),
        };
        let details = serde_json::json!({ "dpop_error": code, "check": check });
        let nonce = oauth == "use_dpop_nonce";
        let err = match at {
            Endpoint::Token if nonce => ApiError::new(ErrorCode::UseDpopNonce),
            Endpoint::Token => ApiError::new(ErrorCode::InvalidDpopProof),
            Endpoint::Resource if bad_request => ApiError::new(ErrorCode::InvalidDpopProof),
            Endpoint::Resource => {
                let mut e = ApiError::new(ErrorCode::DpopProofRejected);
                e.challenge = Some(format!("DPoP error=\"{oauth}\", algs=\"{}\"", state.pop.algs()));
                if nonce {
                    e.message = ErrorCode::UseDpopNonce.default_message().into();
                }
                e
            }
        };
        err.details(details)
    }
}

/// Records a verified proof's `jti`: false when it was already there (a replay). Shared by
/// every instance: Redis when configured, else the database (the gateway's replay stores).
async fn record_jti(state: &AppState, proof: &VerifiedProof, now: Timestamp) -> ApiResult<bool> {
    let key = proof.jti_replay_key();
    let ttl = proof.jti_retention();
    match &state.redis {
        Some(r) => r.insert_if_absent(key, ttl).await.map_err(|e| {
            tracing::warn!(request_id = %request_id(), error = %e, "redis replay store unavailable; refusing DPoP proofs");
            ApiError::new(ErrorCode::Unavailable)
        }),
        None => Ok(state.store.insert_if_absent(key, now, ttl).await?),
    }
}

fn pop_event(kind: EventKind, client: &ClientCtx, flow: Flow, who: Subject) -> AuditEvent {
    let mut e = AuditEvent::new(kind, Outcome::Denied);
    e.subject = who.user;
    e.ip = Some(client.ip.to_string());
    e.request_id = Some(request_id());
    let e = e.with("flow", flow.as_str());
    match who.session {
        Some(s) => e.with("session", s.to_string()),
        None => e,
    }
}

/// Audits a refused proof and feeds the risk engine (a strong signal against the account).
async fn audit_refusal(
    state: &AppState,
    client: &ClientCtx,
    flow: Flow,
    who: Subject,
    code: &str,
    check: Option<u8>,
) -> ApiResult<()> {
    let now = state.clock.now();
    let mut e = pop_event(EventKind::PopProofRejected, client, flow, who).with("code", code);
    if let Some(c) = check {
        e = e.with("check", c);
    }
    state.store.append(vec![e]).await?;
    if let (Some(risk), Some(user)) = (state.risk.as_ref(), who.user) {
        risk.record_pop_failure(&user, now);
    }
    Ok(())
}

/// Revokes a bound family presented with another key or certificate, with its audit event,
/// in one transaction.
async fn revoke_family(
    state: &AppState,
    client: &ClientCtx,
    bound: &gatehouse_core::store::RefreshBinding,
    reason: &'static str,
) -> ApiResult<()> {
    let now = state.clock.now();
    let who = Subject { user: Some(bound.user_id), session: Some(bound.session_id) };
    let e = pop_event(EventKind::PopBindingMismatch, client, Flow::Refresh, who).with("reason", reason);
    state.store.revoke_session(bound.user_id, bound.session_id, reason, now, SideEffects::event(e)).await?;
    if let Some(risk) = state.risk.as_ref() {
        risk.record_pop_failure(&bound.user_id, now);
    }
    Ok(())
}

/// Creates the session, bound when `cnf` is given (the binding commits with the session).
pub async fn create_session(
    state: &AppState,
    new: &NewSession,
    cnf: Option<&Confirmation>,
    reset_keys: &[String],
    fx: SideEffects,
) -> ApiResult<()> {
    match cnf {
        Some(c) => state.store.create_bound_session(new, c, reset_keys, fx).await?,
        None => state.store.create_session(new, reset_keys, fx).await?,
    }
    Ok(())
}

/// The extra token-response members of a bound session: `token_type` `DPoP` for a DPoP-bound
/// session (RFC 9449 §5) and the `cnf` itself. Empty for an unbound one.
pub fn token_fields(cnf: Option<&Confirmation>) -> serde_json::Value {
    match cnf {
        Some(c) => serde_json::json!({
            "token_type": if c.requires_dpop() { "DPoP" } else { "Bearer" },
            "cnf": c,
        }),
        None => serde_json::json!({}),
    }
}

/// The resource-server check, run by [`crate::auth::Authenticated`] after the token and the
/// session were found: R58 check 12, R60 and R61.
pub async fn check_access(
    state: &AppState,
    parts: &Parts,
    session: &Session,
    cnf: Option<&Confirmation>,
    token: &str,
    via: Via,
    client: &ClientCtx,
) -> ApiResult<()> {
    let ctx = PopCtx::from_parts(parts, state);
    if via == Via::Bearer && ctx.has_proof() {
        // R60: `Authorization: Bearer` together with `DPoP` is malformed.
        return Err(ApiError::new(ErrorCode::InvalidRequest).message("A DPoP proof needs the DPoP scheme, not Bearer."));
    }
    let who = Subject { user: Some(session.user_id), session: Some(session.id) };
    let jkt = cnf.as_ref().and_then(|c| c.jkt.as_ref());
    match (via, jkt) {
        (Via::Dpop, Some(jkt)) => {
            ctx.verify(state, client, Flow::Resource, Some(token), Some(jkt.as_str()), who)
                .await
                .map_err(|r| r.into_error(state, Endpoint::Resource))?;
        }
        (Via::Dpop, None) => {
            // An unbound token cannot be used with the DPoP scheme (check 12).
            audit_refusal(state, client, Flow::Resource, who, "dpop_scheme_unbound_token", Some(12)).await?;
            return Err(Refusal::Proof(DpopError::JktMismatch).into_error(state, Endpoint::Resource));
        }
        (Via::Bearer, Some(_)) => {
            // R60: a DPoP-bound token presented as a bearer token.
            audit_refusal(state, client, Flow::Resource, who, "bearer_for_dpop_token", None).await?;
            let mut e = ApiError::new(ErrorCode::DpopProofRejected);
            e.challenge = Some(format!("DPoP error=\"invalid_token\", algs=\"{}\"", state.pop.algs()));
            return Err(e.details(serde_json::json!({ "dpop_error": "bearer_for_dpop_token" })));
        }
        (Via::Cookie, Some(jkt)) if ctx.has_proof() => {
            // A browser session bound to its page key: a proof, when sent, must be sound. The
            // token is an HttpOnly cookie the page cannot hash, so there is no `ath`.
            ctx.verify(state, client, Flow::Resource, None, Some(jkt.as_str()), who)
                .await
                .map_err(|r| r.into_error(state, Endpoint::Resource))?;
        }
        (Via::Cookie, _) | (Via::Bearer, None) => {}
    }
    if let Some(x5t) = cnf.as_ref().and_then(|c| c.x5t_s256.as_ref()) {
        let ok = ctx.cert.as_deref().is_some_and(|der| x5t.matches(der));
        if !ok {
            let code = if ctx.cert.is_some() { "cert_mismatch" } else { "cert_missing" };
            audit_refusal(state, client, Flow::Resource, who, code, None).await?;
            let mut e = ApiError::new(ErrorCode::CertBindingRejected);
            e.challenge = Some("Bearer error=\"invalid_token\"".into());
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gatehouse_core::pop::Jkt;

    #[test]
    fn config_bounds() {
        assert!(PopConfig::default().validate().is_ok());
        let bad = [
            PopConfig { nonce_bucket_secs: 5, ..PopConfig::default() },
            PopConfig { key_cache: 0, ..PopConfig::default() },
            PopConfig { cert_header: "not a header".into(), ..PopConfig::default() },
            PopConfig { dpop: DpopPolicy { max_jti_len: 10_000, ..DpopPolicy::default() }, ..PopConfig::default() },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn nonces_only_when_required_and_shared_by_instances() {
        let secret = SecretBytes::new(vec![7; 32]);
        let off = PopService::new(&PopConfig::default(), &secret).unwrap();
        assert!(off.nonce(Timestamp::from_secs(1_700_000_000)).is_none());
        let cfg = PopConfig { require_nonce: true, ..PopConfig::default() };
        let (a, b) = (PopService::new(&cfg, &secret).unwrap(), PopService::new(&cfg, &secret).unwrap());
        let now = Timestamp::from_secs(1_700_000_000);
        let n = a.nonce(now).unwrap();
        assert_eq!(Some(n.clone()), b.nonce(now), "every instance derives the same nonces");
        assert!(matches!(b.nonce_rule(), NonceRule::Issued(x) if x.is_current(&n, now)));
        let other = PopService::new(&cfg, &SecretBytes::new(vec![8; 32])).unwrap();
        assert_ne!(other.nonce(now), Some(n));
    }

    #[test]
    fn token_fields_name_the_binding() {
        assert_eq!(token_fields(None), serde_json::json!({}));
        let jkt = Jkt::parse("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I").unwrap();
        let d = token_fields(Some(&Confirmation::dpop(jkt)));
        assert_eq!(d["token_type"], "DPoP");
        assert_eq!(d["cnf"]["jkt"], "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
        let m = token_fields(Some(&Confirmation::mtls(CertBinding::from_der(b"\x30\x00"))));
        assert_eq!(m["token_type"], "Bearer", "a certificate-bound token is still a bearer token on the wire");
        assert_eq!(m["cnf"]["x5t#S256"].as_str().map(str::len), Some(43));
    }
}
