//! The router, its middleware, and how the server is assembled from configuration.
//!
//! `app(state)` is a plain function so tests can drive it in process with `oneshot`; `serve`
//! binds a socket and adds the background workers.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use either::Either;
use gatehouse_core::clock::{AdjustableClock, Clock, SystemClock};
use gatehouse_core::password::{PasswordHasher, PasswordPolicy};
use gatehouse_core::rng::{OsRng, SecureRng};
use gatehouse_store::redis::RedisHandle;
use gatehouse_store::{DbSettings, SqlStore};
use tokio::sync::Notify;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::Config;
use crate::error::{ApiError, ErrorCode, REQUEST_ID};
use crate::hashing::HashPool;
use crate::mail::Mailer;
use crate::routes::{self, PREFIX};

/// Where nginx `auth_request` (and other front proxies' forward auth) asks.
const FORWARD_AUTH_PATH: &str = "/_gh/auth/forward";
use crate::state::{AppState, Inner};

/// Builds the router.
pub fn app(state: AppState) -> Router {
    let api = format!("{PREFIX}/api/v1");
    let limit = state.config.server.max_body_bytes;
    let mut router = Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .route(&format!("{PREFIX}/api/openapi.json"), get(routes::openapi::serve))
        .route(&format!("{api}/accounts"), post(routes::accounts::register))
        .route(&format!("{api}/accounts/verify-email"), post(routes::accounts::verify_email))
        .route(&format!("{api}/sessions"), post(routes::sessions::login).get(routes::sessions::list))
        .route(&format!("{api}/sessions/refresh"), post(routes::sessions::refresh))
        .route(&format!("{api}/sessions/current"), delete(routes::sessions::logout))
        .route(&format!("{api}/sessions/revoke-others"), post(routes::sessions::revoke_others))
        .route(&format!("{api}/sessions/{{id}}/revoke"), post(routes::sessions::revoke))
        .route(&format!("{api}/account"), get(routes::me::account))
        .route(&format!("{api}/account/password"), post(routes::me::change_password))
        .route(&format!("{api}/account/security-history"), get(routes::me::history))
        .route(&format!("{api}/api-keys"), post(routes::keys::create).get(routes::keys::list))
        .route(&format!("{api}/api-keys/{{id}}"), get(routes::keys::get))
        .route(&format!("{api}/api-keys/{{id}}/revoke"), post(routes::keys::revoke))
        .route(&format!("{api}/api-keys/{{id}}/rotate"), post(routes::keys::rotate))
        .route(&format!("{api}/api-keys/{{id}}/unlock-withdraw"), post(routes::keys::unlock_withdraw))
        .route(&format!("{api}/api-keys/{{id}}/allowlist"), post(routes::keys::allowlist))
        // second factors and step-up (feat/mfa)
        .route(&format!("{api}/sessions/second-factor"), post(routes::mfa::second_factor))
        .route(&format!("{api}/account/factors"), get(routes::mfa::list))
        .route(&format!("{api}/account/factors/totp"), post(routes::mfa::totp_start))
        .route(&format!("{api}/account/factors/totp/confirm"), post(routes::mfa::totp_confirm))
        .route(&format!("{api}/account/factors/totp/remove"), post(routes::mfa::totp_remove))
        .route(&format!("{api}/account/backup-codes"), post(routes::mfa::backup_regenerate))
        .route(&format!("{api}/account/step-up"), post(routes::mfa::step_up))
        .route(&format!("{api}/account/webauthn/register/start"), post(routes::mfa_webauthn::register_start))
        .route(&format!("{api}/account/webauthn/register/finish"), post(routes::mfa_webauthn::register_finish))
        .route(&format!("{api}/account/webauthn/remove"), post(routes::mfa_webauthn::remove))
        .route(&format!("{api}/account/step-up/webauthn/start"), post(routes::mfa_webauthn::step_up_start))
        .route(&format!("{api}/account/step-up/webauthn/finish"), post(routes::mfa_webauthn::step_up_finish))
        .route(&format!("{api}/sessions/second-factor/webauthn/start"), post(routes::mfa_webauthn::login_start))
        .route(&format!("{api}/sessions/second-factor/webauthn/finish"), post(routes::mfa_webauthn::login_finish))
        .route(&format!("{api}/sessions/passkey/start"), post(routes::mfa_webauthn::passkey_start))
        .route(&format!("{api}/sessions/passkey/finish"), post(routes::mfa_webauthn::passkey_finish))
        .route(&format!("{api}/account/factors/sms"), post(routes::mfa_sms::set_number))
        .route(&format!("{api}/account/factors/sms/remove"), post(routes::mfa_sms::remove_number))
        .route(&format!("{api}/account/factors/sms/confirm"), post(routes::mfa_sms::confirm_number))
        .route(&format!("{api}/sessions/second-factor/sms/send"), post(routes::mfa_sms::send));
    // friction (issue 5): withdrawals, settings lock, recovery, emailed links.
    {
        use routes::{links, recovery, settings_lock, withdrawals};
        router = router
            .route(
                &format!("{api}/withdrawal-addresses"),
                post(withdrawals::add_address).get(withdrawals::list_addresses),
            )
            .route(&format!("{api}/withdrawal-addresses/{{id}}/cancel"), post(withdrawals::cancel_address))
            .route(&format!("{api}/withdrawal-settings"), post(withdrawals::set_settings).get(withdrawals::settings))
            .route(&format!("{api}/withdrawals"), post(withdrawals::create))
            .route(&format!("{api}/withdrawals/{{id}}"), get(withdrawals::get))
            .route(&format!("{api}/withdrawals/{{id}}/confirm"), post(withdrawals::confirm))
            .route(&format!("{api}/account/settings-lock"), post(settings_lock::lock).get(settings_lock::status))
            .route(&format!("{api}/account/settings-lock/unlock"), post(settings_lock::unlock))
            .route(&format!("{api}/account/settings-lock/cancel-unlock"), post(settings_lock::cancel_unlock))
            .route(&format!("{api}/account/anti-phishing-code"), post(settings_lock::set_code))
            .route(&format!("{api}/links/redeem"), post(links::redeem))
            .route(&format!("{PREFIX}/link"), get(links::page).post(links::page_post))
            .route(&format!("{api}/recovery/password-reset"), post(recovery::request_reset))
            .route(&format!("{api}/recovery/password-reset/complete"), post(recovery::complete_reset))
            .route(&format!("{PREFIX}/reset-password"), get(recovery::reset_page).post(recovery::reset_form))
            .route(&format!("{api}/recovery/cases"), post(recovery::open_case))
            .route(&format!("{api}/admin/recovery"), get(recovery::admin_list))
            .route(&format!("{api}/admin/recovery/{{id}}"), get(recovery::admin_get))
            .route(&format!("{api}/admin/recovery/{{id}}/approve"), post(recovery::admin_approve))
            .route(&format!("{api}/admin/recovery/{{id}}/reject"), post(recovery::admin_reject));
    }
    // end friction
    if state.manual_clock.is_some() {
        router = router.route(&format!("{PREFIX}/test/clock"), post(routes::testing::clock));
    }
    // proof of possession (issue 9): the bound-session script, and its test page in test mode
    router = router.route(&format!("{PREFIX}/assets/session-key.js"), get(routes::session_key::script));
    if state.manual_clock.is_some() {
        router = router.route(&format!("{PREFIX}/test/bound-session"), get(routes::session_key::test_page));
    }
    // end proof of possession
    router
        .route(FORWARD_AUTH_PATH, axum::routing::any(crate::gateway::forward::handle))
        .route(&format!("{api}/check-url"), get(routes::phishing::check_api))
        // change of the login email address
        .route(&format!("{api}/account/email"), post(routes::email::request))
        .route(&format!("{api}/account/email/confirm"), post(routes::email::confirm))
        .route(&format!("{PREFIX}/confirm-email"), get(routes::email::confirm_page).post(routes::email::confirm_form))
        // risk: confirmation of a challenged sign-in
        .route(&format!("{api}/sessions/confirm-sign-in"), post(routes::confirm::api))
        // pages (issue 7): server-rendered pages under /_gh, see crate::pages.
        .merge(crate::pages::router())
        .fallback(gateway_or_not_found)
        .method_not_allowed_fallback(|| async { ApiError::new(ErrorCode::MethodNotAllowed) })
        .layer(DefaultBodyLimit::max(limit))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            tracing::error!(request_id = %crate::error::request_id(), "handler panicked");
            ApiError::new(ErrorCode::Internal).into_response()
        }))
        .layer(middleware::from_fn_with_state(state.clone(), edge))
        .with_state(state)
}

/// Proxied exchange paths go to the gateway; anything else is a 404 in our format.
async fn gateway_or_not_found(State(state): State<AppState>, req: Request) -> Response {
    if let Some(gw) = state.gateway.as_ref()
        && let Some(route) = gw.route_for(req.uri().path())
    {
        let ip = crate::http::client_ip_of(&req, &state.trusted_proxies);
        return crate::gateway::proxy::handle(&state, route, ip, req).await;
    }
    ApiError::new(ErrorCode::NotFound).into_response()
}

/// Every request's way in and every answer's way out, in one layer (one boxed future per
/// request rather than one per concern — the gateway's hot path pays for each):
///
/// 1. a request id (never taken from the client), exposed to handlers through a task-local and
///    returned in `X-Request-Id`;
/// 2. 421 for a host this deployment does not serve (a DNS-rebinding or cache-poisoning attempt,
///    or a misrouted request), when an allowlist is configured;
/// 3. 413 for a declared body above the limit, before a byte of it is read (proxied exchange
///    paths have their own limit, enforced by the gateway in the dialect's format);
/// 4. the request counted by route template (never the raw path: bounded labels), method and
///    status, with its latency;
/// 5. a fresh `DPoP-Nonce` on our own answers (issue 9) and the security headers on every
///    answer (R51, R104; pages may set a richer CSP themselves).
async fn edge(State(state): State<AppState>, req: Request, next: Next) -> Response {
    identified(edge_inner(state, req, next)).await
}

/// Runs `answer` under a fresh request id (what error bodies and log lines name) and returns
/// it in `X-Request-Id`.
async fn identified(answer: impl std::future::Future<Output = Response>) -> Response {
    let id = next_request_id();
    let header = HeaderValue::from_str(&id).ok();
    let mut resp = REQUEST_ID.scope(id, answer).await;
    if let Some(v) = header {
        resp.headers_mut().insert(HeaderName::from_static("x-request-id"), v);
    }
    resp
}

async fn edge_inner(state: AppState, req: Request, next: Next) -> Response {
    let forward_check = req.uri().path() == FORWARD_AUTH_PATH;
    let mut resp = match refusal(&state, req.headers(), req.uri().path()) {
        Some(refused) => refused,
        None => {
            let started = std::time::Instant::now();
            // Our own answers carry a fresh DPoP nonce — but not the forward-auth answer, which
            // goes to the front proxy, never to a client that could use one.
            let own = req.uri().path().starts_with(PREFIX) && !forward_check;
            let route = route_label(&state, &req);
            let method = method_label(req.method());
            let mut resp = next.run(req).await;
            state.metrics.request(route.as_str(), method, resp.status().as_u16(), started.elapsed());
            if own
                && let Some(n) = state.pop.nonce(state.clock.now())
                && let Ok(v) = HeaderValue::from_str(&n)
            {
                resp.headers_mut().insert(HeaderName::from_static(crate::pop::HEADER_DPOP_NONCE), v);
            }
            resp
        }
    };
    answer_headers(&mut resp, forward_check);
    resp
}

/// What plain-HTTP connections answer without the router: the forward-auth check (nginx
/// `auth_request` asks it once per proxied request) and proxied exchange paths — the two answers
/// given once per API call.
#[derive(Clone, Copy)]
enum Direct {
    Forward,
    /// The index of the gateway route in `Gateway::routes`.
    Proxy(usize),
}

impl Direct {
    /// Whether `path` is answered directly: the same choice the router makes (our own paths
    /// first, then a gateway route, as `gateway_or_not_found`).
    fn of(state: &AppState, path: &str) -> Option<Self> {
        let gw = state.gateway.as_ref()?;
        if path == FORWARD_AUTH_PATH {
            return Some(Self::Forward);
        }
        if own_path(path) {
            return None;
        }
        gw.route_index(path).map(Self::Proxy)
    }
}

/// A [`Direct`] request answered straight from the connection, with the edge duties inline —
/// request id, 421/413 refusals, request metrics under the same labels, security headers, a
/// panic answered 500 — minus the router's and middleware's per-request allocations and
/// dispatch (issue 3, speed item 12). The answers are those of the routed handlers, which TLS
/// connections and in-process tests still use: both call `forward::answer` / `proxy::handle`.
async fn answer_direct(
    state: &AppState,
    direct: Direct,
    peer: std::net::SocketAddr,
    req: hyper::Request<hyper::body::Incoming>,
) -> Response {
    let started = std::time::Instant::now();
    let mut resp = match refusal(state, req.headers(), req.uri().path()) {
        Some(refused) => refused,
        None => {
            let ip = crate::http::client_ip(peer.ip(), req.headers(), &state.trusted_proxies);
            let method = method_label(req.method());
            let (label, resp) = match direct {
                Direct::Forward => (FORWARD_AUTH_PATH, crate::gateway::forward::answer(state, ip, req.headers()).await),
                Direct::Proxy(i) => match state.gateway.as_ref().and_then(|gw| gw.routes.get(i)) {
                    Some(route) => {
                        let req = req.map(axum::body::Body::new);
                        (&*route.metric_label, crate::gateway::proxy::handle(state, route, ip, req).await)
                    }
                    None => ("unmatched", ApiError::new(ErrorCode::NotFound).into_response()),
                },
            };
            state.metrics.request(label, method, resp.status().as_u16(), started.elapsed());
            resp
        }
    };
    answer_headers(&mut resp, matches!(direct, Direct::Forward));
    resp
}

/// A boxed request future whose panic is answered 500, as `CatchPanicLayer` does on the router.
struct CatchPanic<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future<Output = Response>> std::future::Future for CatchPanic<F> {
    type Output = Result<Response, std::convert::Infallible>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(p) => p.map(Ok),
            Err(_) => {
                tracing::error!("a request answered outside the router panicked");
                std::task::Poll::Ready(Ok(ApiError::new(ErrorCode::Internal).into_response()))
            }
        }
    }
}

/// Paths gatehouse answers itself (never a gateway route).
fn own_path(path: &str) -> bool {
    path.starts_with(PREFIX) || matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// A request refused before any handler sees it: wrong host (421) or a declared body over the
/// limit on our own paths (413).
fn refusal(state: &AppState, headers: &axum::http::HeaderMap, path: &str) -> Option<Response> {
    let allowed = &state.config.server.allowed_hosts;
    if !allowed.is_empty() {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !allowed.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Some(ApiError::new(ErrorCode::MisdirectedRequest).into_response());
        }
    }
    if !own_path(path) {
        return None;
    }
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    declared
        .is_some_and(|n| n > state.config.server.max_body_bytes as u64)
        .then(|| ApiError::new(ErrorCode::PayloadTooLarge).into_response())
}

/// Request ids: a random per-process prefix and a counter. Unique and cheap (no system call
/// per request); not secret — they only correlate an answer with log lines.
struct RequestIds {
    prefix: String,
    next: std::sync::atomic::AtomicU64,
}

static REQUEST_IDS: std::sync::OnceLock<RequestIds> = std::sync::OnceLock::new();

fn next_request_id() -> String {
    let ids = REQUEST_IDS.get_or_init(|| RequestIds {
        prefix: hex::encode(gatehouse_core::rng::random_bytes::<4>(&OsRng)),
        next: std::sync::atomic::AtomicU64::new(0),
    });
    let n = ids.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}{n:08x}", ids.prefix)
}

/// The metrics label: the route template, the gateway route's label, or `unmatched` (shared
/// strings: no allocation per request).
fn route_label(state: &AppState, req: &Request) -> RouteLabel {
    match req.extensions().get::<axum::extract::MatchedPath>() {
        Some(p) => RouteLabel::Matched(p.clone()),
        None => match state.gateway.as_ref().and_then(|g| g.route_for(req.uri().path())) {
            Some(r) => RouteLabel::Gateway(Arc::clone(&r.metric_label)),
            None => RouteLabel::Unmatched,
        },
    }
}

enum RouteLabel {
    Matched(axum::extract::MatchedPath),
    Gateway(Arc<str>),
    Unmatched,
}

impl RouteLabel {
    fn as_str(&self) -> &str {
        match self {
            Self::Matched(p) => p.as_str(),
            Self::Gateway(l) => l,
            Self::Unmatched => "unmatched",
        }
    }
}

fn method_label(m: &axum::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// The headers every answer leaves with. A granted forward-auth check is read by the front
/// proxy alone — nginx `auth_request`, Traefik ForwardAuth and Caddy `forward_auth` copy chosen
/// headers into the upstream request and never show this answer to a client — so the browser
/// headers would be dead bytes on the hottest answer (ADR 0017). `Cache-Control: no-store`
/// stays: it stops a front proxy with a cache in front of the check from storing one grant
/// and replaying it for every request. Refusals keep every header: Traefik and Caddy pass them
/// to the client.
fn answer_headers(resp: &mut Response, forward_check: bool) {
    if forward_check && resp.status() == StatusCode::OK {
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    } else {
        security_headers(resp);
    }
}

/// The security headers every answer carries unless the handler set its own.
fn security_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    let defaults = [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in defaults {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
}

/// Everything `serve` needs that tests may want to replace.
pub struct Runtime {
    /// The assembled state.
    pub state: AppState,
    /// The mail worker, to be spawned.
    pub mailer: Mailer,
    /// The webhook worker, to be spawned when webhooks are configured.
    pub webhooks: crate::notify::WebhookWorker,
    // friction (issue 5)
    /// The withdrawal delivery worker, spawned when an upstream is configured.
    pub intents: crate::friction::IntentDelivery,
    // end friction
}

/// Assembles the server: keys, store, secrets, Redis, hasher, mailer.
pub async fn build(cfg: Config) -> anyhow::Result<Runtime> {
    let rng: Arc<dyn SecureRng> = Arc::new(OsRng);
    let manual_clock = cfg.testing.danger_manual_clock.then(AdjustableClock::new);
    if manual_clock.is_some() {
        tracing::warn!("testing.danger_manual_clock is on: time is controlled through POST /_gh/test/clock");
    }
    let clock: Arc<dyn Clock> = match &manual_clock {
        Some(c) => Arc::new(c.clone()),
        None => Arc::new(SystemClock),
    };
    let keyring = crate::keys::load_keyring(&cfg, rng.as_ref())?;
    let settings = DbSettings {
        max_connections: cfg.storage.db_max_connections,
        acquire_timeout: std::time::Duration::from_millis(cfg.storage.db_acquire_timeout_ms),
        statement_timeout: std::time::Duration::from_millis(cfg.storage.db_statement_timeout_ms),
        group_commit: cfg.storage.db_group_commit,
    };
    let store = SqlStore::connect(&cfg.database_url(), settings, clock.clone())
        .await
        .map_err(|e| anyhow::anyhow!("database: {e}"))?;
    let secrets = crate::keys::server_secrets(&store, &keyring, rng.as_ref(), clock.now()).await?;
    store.set_audit_signer(secrets.audit_key.clone(), &cfg.instance_name());
    let store = Arc::new(store);
    store.start_background();
    let redis = match cfg.storage.redis_url.expose() {
        "" => None,
        url => Some(
            RedisHandle::connect(url, std::time::Duration::from_millis(cfg.storage.redis_timeout_ms))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .with_prefix(&cfg.storage.redis_prefix),
        ),
    };
    let hasher = PasswordHasher::new(cfg.password.argon2, rng.as_ref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let password_policy = PasswordPolicy::new(&cfg.password.brand_words);
    let hash_pool = HashPool::new(cfg.server.hash_workers, cfg.server.hash_queue);
    let mail_wake = Arc::new(Notify::new());
    let mailer = Mailer::new(
        &cfg.mail,
        &cfg.storage.data_dir,
        store.clone(),
        keyring.clone(),
        clock.clone(),
        mail_wake.clone(),
    )?;
    // friction (issue 5): anti-phishing code, official channels and freeze link in every mail.
    let mailer = mailer.with_decorator(crate::mail::Decorator {
        store: store.clone(),
        keyring: keyring.clone(),
        rng: rng.clone(),
        origin: cfg.server.public_origin.clone(),
        friction: cfg.friction.clone(),
    });
    let intent_wake = Arc::new(Notify::new());
    let intents =
        crate::friction::IntentDelivery::new(&cfg.friction, store.clone(), clock.clone(), intent_wake.clone());
    // end friction
    let trusted_proxies =
        gatehouse_core::apikey::TrustedProxies::parse(cfg.server.trusted_proxies.iter().map(|n| n.to_string()))
            .map_err(|e| anyhow::anyhow!("server.trusted_proxies: {e}"))?;
    let mut gateway = crate::gateway::Gateway::new(
        &cfg.gateway,
        cfg.apikey,
        redis.clone(),
        cfg.gateway.replay_store,
        cfg.gateway.instances,
    )?;
    let webhook_wake = Arc::new(Notify::new());
    let webhooks = crate::notify::WebhookWorker::new(&cfg.notify, store.clone(), clock.clone(), webhook_wake.clone());
    let metrics = Arc::new(crate::metrics::Metrics::default());
    gateway.metrics = Some(metrics.clone());
    let risk = if cfg.risk.enabled {
        let r = Arc::new(crate::risk::RiskService::new(&cfg.risk)?);
        r.load(store.as_ref()).await.map_err(|e| anyhow::anyhow!("risk statistics: {e}"))?;
        Some(r)
    } else {
        None
    };
    gateway.risk = risk.clone();
    let url_checker = Some(
        gatehouse_core::phishing::UrlChecker::new(gatehouse_core::phishing::OfficialConfig {
            domains: cfg.phishing.official_domains.clone(),
            brand_words: cfg.phishing.brand_words.clone(),
            app_links: cfg.phishing.app_links.clone(),
        })
        .map_err(|e| anyhow::anyhow!("phishing: {e}"))?,
    );
    // proof of possession (issue 9)
    let pop = Arc::new(crate::pop::PopService::new(&cfg.pop, &secrets.refresh_key)?);
    let state = AppState::new(Inner {
        pop,
        intent_wake,
        url_checker,
        risk,
        metrics,
        webhook_wake,
        gateway: Some(Arc::new(gateway)),
        trusted_proxies,
        config: cfg,
        store,
        redis,
        clock,
        manual_clock,
        rng,
        keyring,
        refresh_key: secrets.refresh_key,
        hasher,
        password_policy,
        hash_pool,
        mail_wake,
    });
    Ok(Runtime { state, mailer, webhooks, intents })
}

/// Largest request head (request line + headers) accepted; larger heads get 431 (F11).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Binds, prints the bound address on stdout (tests read it) and serves until SIGINT/SIGTERM.
///
/// The accept loop is hyper's own (not `axum::serve`) so the request-head limit can be set:
/// a head over [`MAX_HEAD_BYTES`] is answered 431 by hyper before any of our code runs. On
/// shutdown the listener closes at once and in-flight requests get up to 10 s to finish, so a
/// rolling restart behind a load balancer fails no request (F19).
pub async fn serve(rt: Runtime) -> anyhow::Result<()> {
    use hyper_util::rt::TokioIo;
    use tower::ServiceExt as _;
    let listener = tokio::net::TcpListener::bind(rt.state.config.server.listen).await?;
    let addr = listener.local_addr()?;
    // proof of possession (issue 9): optional TLS termination with client certificates
    let tls = crate::tls::acceptor(&rt.state.config.tls)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("gatehouse listening on {scheme}://{addr}");
    tracing::info!(%addr, embedded = rt.state.config.is_embedded(), "listening");
    tokio::spawn(rt.mailer.run());
    if rt.state.config.notify.enabled() {
        tokio::spawn(rt.webhooks.run());
    }
    // friction (issue 5)
    if !rt.state.config.friction.upstream_url.is_empty() {
        tokio::spawn(rt.intents.run());
    }
    // end friction
    let remind = std::time::Duration::from_secs(rt.state.config.gateway.reminder_check_secs);
    tokio::spawn(crate::gateway::alerts::run(rt.state.clone(), std::time::Duration::from_secs(2), remind));
    let state = rt.state.clone();
    let router = app(rt.state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    // At most 100 header fields (431 beyond): hyper's default. Not set explicitly — an explicit
    // `max_headers` makes hyper fill both parse arrays element by element for every request
    // (≈ 0.3 µs), where the default leaves them uninitialised; `hostile.rs` pins the limit.
    builder.max_buf_size(MAX_HEAD_BYTES.max(8192)).timer(hyper_util::rt::TokioTimer::new());
    builder.header_read_timeout(std::time::Duration::from_secs(10));
    let serve_conn = |stream: tokio::net::TcpStream, peer: std::net::SocketAddr| {
        let _ = stream.set_nodelay(true);
        // proof of possession (issue 9): TLS connections are served by crate::tls
        if let Some(acceptor) = &tls {
            let (router, builder) = (router.clone(), builder.clone());
            crate::tls::spawn_connection(acceptor.clone(), stream, peer, router, builder, graceful.watcher());
            return;
        }
        let router = router.clone();
        let state = state.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            if let Some(direct) = Direct::of(&state, req.uri().path()) {
                let state = state.clone();
                return Either::Left(CatchPanic(Box::pin(async move {
                    identified(answer_direct(&state, direct, peer, req)).await
                })));
            }
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            Either::Right(router.clone().oneshot(req.map(axum::body::Body::new)))
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            let _ = conn.await;
        });
    };
    let stop = shutdown();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, peer)) => serve_conn(stream, peer),
                    Err(e) => tracing::warn!(error = %e, "accept failed"),
                }
            }
            () = &mut stop => break,
        }
    }
    // rolling restart (F19): serve what the kernel already queued, then close the listener.
    let queued = crate::drain::accept_queued(listener);
    tracing::info!(queued = queued.len(), "shutting down: listener closed, draining connections");
    for (stream, peer) in queued {
        serve_conn(stream, peer);
    }
    // hyper's graceful shutdown closes a connection that has not yet read a request, even when
    // the request is already in the socket buffer; give just-accepted connections time to read
    // theirs (a load balancer wrote it right after the handshake) before asking them to close.
    tokio::time::sleep(crate::drain::READ_GRACE).await;
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {
            tracing::warn!("in-flight connections did not finish within 10 s");
        }
    }
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
