//! Request-level guards shared by the API, the UI and a vendor's own routes:
//! authentication, cross-site request checks, JSON error bodies, security
//! headers, and extractors that put authorization in a handler's signature.

use portcullis_core::ErrorCode;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode};

use crate::auth::{AuthMethod, Group, Identity, SESSION_COOKIE, Verdict, parse_basic, secrets_equal};
use crate::conn::ConnInfo;
use crate::error::{ApiError, ErrorBody, ErrorDetail, ErrorInfo, code_for_status};
pub use crate::headers::{SECURITY_HEADERS, cookie};
use crate::runtime::{Actor, Runtime};
use crate::security::AttemptRefusal;
use crate::webroot::Answer;

/// Time a client gets to send a JSON request body once its header is in
/// (slow-body defence; the header has its own 10 s limit).
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// Time a client gets to send a certificate upload (up to 3 MiB).
pub const UPLOAD_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Header the web UI sends with its own requests, so that a 401 does not
/// make the browser pop up its Basic dialog.
pub const UI_REQUEST_HEADER: &str = "x-portcullis-ui";
/// Header that carries the session's CSRF token on unsafe requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The client address of a request, if it came over the network: the peer,
/// or what a trusted proxy says in `X-Forwarded-For` ([`ConnInfo::client`]).
pub fn client_ip(parts_ext: &http::Extensions) -> Option<std::net::IpAddr> {
    parts_ext.get::<ConnInfo>().map(|i| i.client)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn unauthorized(rt: &Runtime, req_headers: &http::HeaderMap, message: &str, stale: bool) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message).into_response();
    if !req_headers.contains_key(UI_REQUEST_HEADER) {
        // Basic first: tools that read only the first challenge (hydra, old
        // clients) get the scheme every client has; browsers pick Digest themselves.
        resp.headers_mut().append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"portcullis\", charset=\"UTF-8\""),
        );
        if rt.digest_on() {
            for c in rt.auth().digest.challenges(monotonic_seconds(rt), stale) {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    resp.headers_mut().append(header::WWW_AUTHENTICATE, v);
                }
            }
        }
    }
    resp
}

/// Requires a valid login (Basic credentials or a session cookie) and puts
/// the [`Identity`] in the request. Only credentials presented and wrong
/// count as a failed attempt; a request without any is just challenged.
pub async fn authenticate(State(rt): State<Arc<Runtime>>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    match identify(&rt, &parts).await {
        Ok(id) => {
            log_access(&rt, &parts, Some(&id.user), true);
            parts.extensions.insert(id);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(resp) => {
            // Wrong credentials were logged where they were checked; this is
            // an access to a protected URL without any.
            if !parts.headers.contains_key(header::AUTHORIZATION) {
                log_access(&rt, &parts, None, false);
            }
            resp
        }
    }
}

pub(crate) fn log_access(rt: &Runtime, parts: &Parts, user: Option<&str>, authorized: bool) {
    if let Some(ip) = client_ip(&parts.extensions) {
        let timeout = rt.running().webserver.intrusion_detection.timeout_minutes;
        rt.security().log_access(ip, user, authorized, parts.uri.path(), rt.timestamp(), timeout);
    }
}

/// Counts a presented-and-wrong credential (logfile, intrusion detection).
pub fn wrong_credentials(rt: &Runtime, ext: &http::Extensions, user: &str, path: &str) {
    if let Some(ip) = client_ip(ext) {
        rt.failed_login(ip, user, path);
    }
}

/// Like [`authenticate`], but a request without credentials passes through
/// without an identity (for pages that work either way, such as the login page).
pub async fn identify_optional(State(rt): State<Arc<Runtime>>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    if let Ok(id) = identify(&rt, &parts).await {
        parts.extensions.insert(id);
    }
    next.run(Request::from_parts(parts, body)).await
}

pub(crate) async fn identify(rt: &Runtime, req: &Parts) -> Result<Identity, Response> {
    let headers = &req.headers;
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or("");
        if value.len() > 6 && value[..6].eq_ignore_ascii_case("digest") {
            return identify_digest(rt, req, value);
        }
        if let Some(secret) = crate::tokens::bearer(value) {
            return identify_token(rt, req, secret);
        }
        let Some((user, password)) = parse_basic(value) else {
            return Err(unauthorized(rt, headers, "the Authorization header is not valid HTTP Basic", false));
        };
        return match check_password(rt, &req.extensions, &user, &password, req.uri.path()).await {
            Ok(id) if rt.auth().has_second_factor(&id.user) => {
                // The right password, but a person's account: logged, not
                // counted (no guess was wrong), and said plainly.
                log_access(rt, req, Some(&id.user), false);
                Err(second_factor_account())
            }
            Ok(id) => {
                rt.capture_digest(&id.user, &password).await;
                Ok(id)
            }
            Err(PasswordRefusal::Wrong) => {
                Err(unauthorized(rt, headers, "wrong user name or password", false))
            }
            Err(PasswordRefusal::Refused(resp)) => Err(resp),
        };
    }
    if let Some(token) = cookie(headers, SESSION_COOKIE) {
        let Some(id) = rt.auth().session(token, rt.clock().monotonic()) else {
            return Err(unauthorized(rt, headers, "the session has ended; log in again", false));
        };
        if !is_safe(&req.method) {
            let csrf = match &id.via {
                AuthMethod::Session { csrf } => csrf.as_str(),
                _ => "",
            };
            let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            if !secrets_equal(sent, csrf) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    ErrorCode::CsrfTokenInvalid,
                    "the request lacks the session's CSRF token (X-CSRF-Token)",
                )
                .into_response());
            }
        }
        return Ok(id);
    }
    Err(unauthorized(rt, headers, "log in to use this resource", false))
}

/// The name a presented-and-unknown API token is counted under in the
/// logfile and the intrusion detection (no account's: names have no parentheses).
pub const UNKNOWN_TOKEN_USER: &str = "(token)";

/// Checks an API token, at every request (so a revoked or expired one is
/// refused at once, on open connections too), guarded per client like a
/// password: a client held back is refused before the check, and a
/// presented-and-wrong token (unknown, or used from an address it does not
/// list) is a failed attempt. The check is a keyed hash: no turn is waited for.
// The error is the finished answer (see `identify_digest`).
#[allow(clippy::result_large_err)]
fn identify_token(rt: &Runtime, req: &Parts, secret: &str) -> Result<Identity, Response> {
    use crate::auth::TokenVerdict;
    let ip = client_ip(&req.extensions);
    if let Some(ip) = ip {
        rt.security().may_attempt(ip, rt.clock().monotonic()).map_err(attempt_refused)?;
    }
    let now = rt.now();
    match rt.auth().verify_token(secret, now, ip) {
        TokenVerdict::Valid(id) => {
            if let AuthMethod::Token { name, scope } = &id.via {
                rt.auth().token_used(name, now);
                if !scope.permits(&req.method, req.uri.path()) {
                    log_access(rt, req, Some(&id.user), true);
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        ErrorCode::Forbidden,
                        format!(
                            "the token \"{name}\" has the scope \"{}\", which does not allow this request",
                            scope.as_str()
                        ),
                    )
                    .into_response());
                }
            }
            Ok(id)
        }
        TokenVerdict::Invalid => {
            wrong_credentials(rt, &req.extensions, UNKNOWN_TOKEN_USER, req.uri.path());
            Err(invalid_token("the bearer token is not valid"))
        }
        TokenVerdict::WrongSource { account, name } => {
            wrong_credentials(rt, &req.extensions, &account, req.uri.path());
            Err(invalid_token(&format!("the token \"{name}\" may not be used from this address")))
        }
        TokenVerdict::Expired { account, name } => {
            // The right secret, only late: logged, not counted as a guess.
            log_access(rt, req, Some(&account), false);
            Err(invalid_token(&format!("the token \"{name}\" has expired")))
        }
    }
}

/// The 401 of a request whose bearer token was refused: RFC 6750's
/// challenge (`error="invalid_token"`), so a client knows its token, not
/// the scheme, is the problem; no Basic or Digest challenge (a machine
/// sending a token has no password to offer instead).
fn invalid_token(message: &str) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"portcullis\", error=\"invalid_token\""),
    );
    resp
}

/// The 401 of Basic or Digest with the right password of an account with a
/// second factor: people sign in through the web UI (password and code),
/// machines use API tokens. The challenge names the scheme that works.
fn second_factor_account() -> Response {
    let mut resp = ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::SecondFactorAccount,
        "this account signs in with a second factor: use the web UI, or an API token for machines",
    )
    .into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"portcullis\""));
    resp
}

/// The error code and message of a refused second-factor code.
#[cfg(feature = "totp")]
pub(crate) fn second_factor_refusal(
    refusal: portcullis_core::second_factor::CodeRefusal,
) -> (ErrorCode, &'static str) {
    use portcullis_core::second_factor::CodeRefusal;
    match refusal {
        CodeRefusal::Wrong => (ErrorCode::SecondFactorWrong, "the second factor's code is wrong"),
        CodeRefusal::Used => (
            ErrorCode::SecondFactorCodeUsed,
            "this code has been used already (each works once): wait for the next one",
        ),
    }
}

/// After the right password of `user` at a login (`path`), its second
/// factor, if it has one: no code asks for one (401 `second_factor_required`,
/// not a failure: the UI then asks for the code); a wrong or used code is a
/// failed login (counted per client and per account, logged). A code is an
/// app's 6 digits or a recovery code.
pub(crate) async fn check_second_factor(
    rt: &Runtime,
    ext: &http::Extensions,
    user: &str,
    code: Option<&str>,
    path: &str,
) -> Result<(), Response> {
    if !rt.auth().has_second_factor(user) {
        return Ok(());
    }
    let Some(code) = code.filter(|c| !c.trim().is_empty()) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::SecondFactorRequired,
            "this account has two-step verification: give the code its authenticator app shows, or one of its recovery codes",
        )
        .field("code")
        .into_response());
    };
    #[cfg(feature = "totp")]
    {
        let actor = Actor { user: Some(user.to_string()), client_ip: client_ip(ext) };
        match rt.use_second_factor(user, code, &actor).await {
            Ok(_) => Ok(()),
            Err(refusal) => {
                if let Some(ip) = client_ip(ext) {
                    rt.failed_login(ip, user, path);
                }
                let (code, message) = second_factor_refusal(refusal);
                Err(ApiError::new(StatusCode::UNAUTHORIZED, code, message).field("code").into_response())
            }
        }
    }
    #[cfg(not(feature = "totp"))]
    {
        // Stored by a build with it: this one cannot check the codes.
        let _ = (ext, code, path);
        Err(crate::build_info::not_built_response("totp"))
    }
}

/// Seconds on the monotonic clock (Digest nonces are dated with it).
fn monotonic_seconds(rt: &Runtime) -> u64 {
    rt.clock().monotonic().since_origin().as_secs()
}

/// Why [`check_password`] did not accept a password.
pub(crate) enum PasswordRefusal {
    /// Presented and wrong: counted as a failed attempt (logfile, intrusion
    /// detection, rate bound); the caller answers it its own way.
    Wrong,
    /// Not checked, or checked but not to be accepted: the answer to send
    /// (403 for a denied client, 429 for a throttled one, 503 when busy).
    Refused(Response),
}

/// The answer to a client that may not have its credentials checked now.
pub(crate) fn attempt_refused(refusal: AttemptRefusal) -> Response {
    match refusal {
        AttemptRefusal::Denied => {
            let mut resp = ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::AccessDenied,
                "access from this address is denied",
            )
            .into_response();
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
        AttemptRefusal::Throttled(t) => {
            let seconds = t.retry_after_seconds().max(1);
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyAttempts,
                format!("too many failed logins from this address; try again in {seconds} s"),
            )
            .into_response();
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            resp
        }
    }
}

/// The answer to a password login of an account whose password logins are
/// locked ([`portcullis_core::account_lockout`]), for `left` more.
fn account_locked(user: &str, left: std::time::Duration) -> Response {
    let seconds = left.as_secs().max(1);
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::AccountLocked,
        format!("too many failed logins of the account \"{user}\": its password logins are locked for {seconds} s more (its API tokens still work)"),
    )
    .into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    resp
}

fn busy() -> Response {
    let mut resp = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Busy,
        "too many password checks are waiting; try again in a moment",
    )
    .into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// Checks a presented user name and password of the request with extensions
/// `ext` (a failure is logged against `path`), guarded per client:
///
/// 1. a client denied by now (blocked since its request was admitted) or held
///    back by the failed-login rate bound is refused before any check;
/// 2. a password verified a moment ago is accepted from the cache;
/// 3. otherwise the client waits for its turn (one check per client at a time,
///    [`crate::security::PASSWORD_CHECKS_PER_CLIENT`]) and step 1 is done
///    again, since a check that ran meanwhile may have blocked it;
/// 4. after the check, a failure is counted, and a correct password from a
///    client blocked meanwhile is refused all the same.
///
/// So a client sending many guesses at once (HTTP/2 streams on one
/// connection, or parallel connections) gets them checked one after the other,
/// and none after its block.
pub(crate) async fn check_password(
    rt: &Runtime,
    ext: &http::Extensions,
    user: &str,
    password: &str,
    path: &str,
) -> Result<Identity, PasswordRefusal> {
    if let Some(left) = rt.auth().account_locked(user, rt.clock().monotonic()) {
        return Err(PasswordRefusal::Refused(account_locked(user, left)));
    }
    let Some(ip) = client_ip(ext) else {
        // Not from the network (an embedder calling the router itself): nothing to guard per client.
        return match rt.auth().verify(user, password).await {
            Verdict::Valid(id) => Ok(id),
            Verdict::Invalid => Err(PasswordRefusal::Wrong),
            Verdict::Busy => Err(PasswordRefusal::Refused(busy())),
        };
    };
    let security = &rt.security();
    let refused = |r| PasswordRefusal::Refused(attempt_refused(r));
    security.may_attempt(ip, rt.clock().monotonic()).map_err(refused)?;
    if let Some(id) = rt.auth().cached(user, password) {
        return Ok(id);
    }
    let Some(_turn) = security.attempt_slot(ip, crate::auth::VERIFY_QUEUE_WAIT).await else {
        return Err(PasswordRefusal::Refused(busy()));
    };
    security.may_attempt(ip, rt.clock().monotonic()).map_err(refused)?;
    match rt.auth().verify(user, password).await {
        Verdict::Valid(_) if security.denies(ip) => Err(refused(AttemptRefusal::Denied)),
        Verdict::Valid(id) => Ok(id),
        Verdict::Invalid => {
            rt.failed_login(ip, user, path);
            Err(PasswordRefusal::Wrong)
        }
        Verdict::Busy => Err(PasswordRefusal::Refused(busy())),
    }
}

// The error is the finished 401 answer, built once per refused request and
// returned straight to the client; boxing it would only add an allocation.
#[allow(clippy::result_large_err)]
fn identify_digest(rt: &Runtime, req: &Parts, value: &str) -> Result<Identity, Response> {
    use crate::digest::DigestVerdict;
    let headers = &req.headers;
    if !rt.digest_on() {
        let why = if crate::build_info::built("digest") {
            "Digest authentication is not enabled on this device; use Basic"
        } else {
            "this build of portcullis does not include the \"digest\" feature; use Basic"
        };
        return Err(unauthorized(rt, headers, why, false));
    }
    let Some(resp) = crate::digest::parse(value) else {
        return Err(unauthorized(rt, headers, "the Authorization header is not valid HTTP Digest", false));
    };
    let target = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    // The same guard as a password check (see `check_password`); a Digest
    // check is a few hashes, done at once, so no turn is waited for.
    if let Some(ip) = client_ip(&req.extensions) {
        rt.security().may_attempt(ip, rt.clock().monotonic()).map_err(attempt_refused)?;
    }
    if let Some(left) = rt.auth().account_locked(&resp.username, rt.clock().monotonic()) {
        return Err(account_locked(&resp.username, left));
    }
    let now = monotonic_seconds(rt);
    match rt.auth().verify_digest(&resp, req.method.as_str(), target, now) {
        DigestVerdict::Valid(user) if rt.auth().has_second_factor(&user) => {
            log_access(rt, req, Some(&user), false);
            Err(second_factor_account())
        }
        DigestVerdict::Valid(user) => rt
            .auth()
            .digest_identity(&user)
            .ok_or_else(|| unauthorized(rt, headers, "wrong user name or password", false)),
        DigestVerdict::Stale => {
            Err(unauthorized(rt, headers, "the nonce has expired; retry with the new one", true))
        }
        DigestVerdict::Invalid => {
            wrong_credentials(rt, &req.extensions, &resp.username, req.uri.path());
            Err(unauthorized(rt, headers, "wrong user name or password", false))
        }
    }
}

/// Limits and state the front layer needs.
#[derive(Clone)]
pub struct Front {
    /// The runtime.
    pub rt: Arc<Runtime>,
    /// Largest JSON body.
    pub body_limit: usize,
    /// Largest upload body.
    pub upload_limit: usize,
}

impl Front {
    /// Puts the checks around the application router. `direct_webroot`:
    /// whether requests for paths no built-in route claims may go to the
    /// webroot without the router (false when the embedder added routes of
    /// its own, which may claim any path).
    pub fn wrap(self, router: axum::Router, direct_webroot: bool) -> FrontService {
        FrontService { front: self, router, direct_webroot }
    }
}

/// Whether a path belongs to the API or the UI, never to the webroot.
pub(crate) fn reserved_for_api_and_ui(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/admin/") || path == "/admin"
}

/// Paths outside the API and the UI that the router claims, which the
/// webroot must not answer directly (a prefix ending in `/` claims what is
/// under it).
const ROUTED_OUTSIDE_API_AND_UI: [&str; 2] = ["/healthz", "/.well-known/"];

/// The router, behind what every request goes through, in one layer
/// (hand-written: each `from_fn` layer costs boxed futures and service
/// clones per request):
/// 1. a body declared larger than its route allows is refused at once;
/// 2. the client address is resolved (`X-Forwarded-For` only from trusted
///    proxies) and a denied client is refused — per request too, since the
///    connection check cannot see through a proxy, and a keep-alive
///    connection opened before a block must not go on guessing;
/// 3. a request naming a host that is not the device's is refused (DNS
///    rebinding; [`portcullis_core::hosts`]);
/// 4. plain HTTP is redirected to HTTPS when the port's policy says so;
/// 5. the admin UI and API are refused on a port whose policy does not allow them;
/// 6. unsafe requests sent by a browser on behalf of another site are refused.
///
/// Then, on the answer ([`FrontFuture`]): HSTS is added when due, every error
/// gets the JSON error body, worded in the language of `Accept-Language`
/// ([`crate::i18n`]), and every answer the security headers.
#[derive(Clone)]
pub struct FrontService {
    front: Front,
    router: axum::Router,
    direct_webroot: bool,
}

impl FrontService {
    /// Answers a request that came over the connection `info`.
    pub fn serve<B>(&self, req: http::Request<B>, mut info: ConnInfo) -> FrontFuture
    where
        B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let f = &self.front;
        let (mut parts, body) = req.into_parts();
        let api = parts.uri.path().starts_with("/api/");
        let accept_language = parts.headers.get(header::ACCEPT_LANGUAGE).cloned();
        if let Some(refusal) = before(f, &parts, &mut info) {
            return FrontFuture {
                state: FrontState::Answer(Some(refusal)),
                hsts_max_age: None,
                api,
                accept_language,
                counted: (f.rt.security().fleet().clone(), info.local_port, info.tls),
            };
        }
        let hsts_max_age = info
            .tls
            .then(|| {
                let running = f.rt.running();
                // The certificate and the clock are read only when HSTS is on.
                running.webserver.hsts_enabled.then(|| {
                    portcullis_core::hsts::max_age(&running.webserver, &f.rt.certs().served(), f.rt.now())
                })
            })
            .flatten()
            .flatten();
        let counted = (f.rt.security().fleet().clone(), info.local_port, info.tls);
        let mut future =
            FrontFuture { state: FrontState::Answer(None), hsts_max_age, api, accept_language, counted };
        if let Some(w) = self.direct_webroot(&parts) {
            // What the router's fallback would do, without the router: no
            // route lookup, request extensions or boxed route futures.
            future.state = match w.answer(&parts.method, parts.uri.path(), &parts.headers) {
                Answer::Ready(resp) => FrontState::Answer(Some(future.with_hsts(resp))),
                Answer::Read(read) => {
                    let w = w.clone();
                    FrontState::Reading(Box::pin(async move { w.read(read).await }))
                }
            };
            return future;
        }
        parts.extensions.insert(info);
        let req = Request::from_parts(parts, Body::new(body));
        future.state = FrontState::Routed(tower::Service::call(&mut self.router.clone(), req));
        future
    }

    /// The webroot, if it answers this request directly.
    fn direct_webroot(&self, parts: &Parts) -> Option<&Arc<crate::webroot::Webroot>> {
        let w = self.front.rt.webroot().filter(|_| self.direct_webroot)?;
        let path = parts.uri.path();
        let routed = reserved_for_api_and_ui(path)
            || ROUTED_OUTSIDE_API_AND_UI
                .iter()
                .any(|p| if p.ends_with('/') { path.starts_with(p) } else { path == *p });
        (!routed && !self.front.rt.running().webroot.login_required).then_some(w)
    }
}

/// The answer of [`FrontService`]: a future of its own instead of a boxed
/// `async` block, one allocation (of over a kilobyte) less per request.
pub struct FrontFuture {
    state: FrontState,
    /// `Strict-Transport-Security: max-age=` to add, if due.
    hsts_max_age: Option<u32>,
    /// Whether the request was for the API.
    api: bool,
    /// The request's `Accept-Language`, in which an error answer is worded.
    accept_language: Option<HeaderValue>,
    /// Where the answer is counted: the metrics, and the listener's port and protocol.
    counted: (Arc<crate::fleet::Fleet>, u16, bool),
}

type BoxedAnswer = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

enum FrontState {
    /// The router is answering.
    Routed(axum::routing::future::RouteFuture<std::convert::Infallible>),
    /// The webroot is reading the content.
    Reading(BoxedAnswer),
    /// The answer, to finish.
    Answer(Option<Response>),
    /// An error answer getting its JSON body (it reads the original body).
    ErrorBody(BoxedAnswer),
}

impl FrontFuture {
    fn count(&self, resp: &Response) {
        let (fleet, port, tls) = &self.counted;
        fleet.request(*port, *tls, resp.status().as_u16());
    }

    fn with_hsts(&self, mut resp: Response) -> Response {
        if let Some(max_age) = self.hsts_max_age {
            resp.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, max_age_value(max_age));
        }
        resp
    }
}

impl std::future::Future for FrontFuture {
    type Output = Result<Response, std::convert::Infallible>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            match &mut this.state {
                FrontState::Routed(fut) => {
                    let Poll::Ready(Ok(resp)) = std::pin::Pin::new(fut).poll(cx) else {
                        return Poll::Pending;
                    };
                    this.state = FrontState::Answer(Some(this.with_hsts(resp)));
                }
                FrontState::Reading(fut) => {
                    let Poll::Ready(resp) = fut.as_mut().poll(cx) else { return Poll::Pending };
                    this.state = FrontState::Answer(Some(this.with_hsts(resp)));
                }
                FrontState::Answer(resp) => {
                    let Some(resp) = resp.take() else { return Poll::Pending };
                    if !needs_json_error_body(&resp) {
                        let resp = crate::i18n::localize_error(resp, this.accept_language.as_ref());
                        this.count(&resp);
                        return Poll::Ready(Ok(finish(resp, this.api)));
                    }
                    this.state = FrontState::ErrorBody(Box::pin(json_error_body(resp)));
                }
                FrontState::ErrorBody(fut) => {
                    let Poll::Ready(resp) = fut.as_mut().poll(cx) else { return Poll::Pending };
                    let resp = crate::i18n::localize_error(resp, this.accept_language.as_ref());
                    this.count(&resp);
                    return Poll::Ready(Ok(finish(resp, this.api)));
                }
            }
        }
    }
}

fn max_age_value(max_age: u32) -> HeaderValue {
    HeaderValue::from_str(&format!("max-age={max_age}"))
        .unwrap_or_else(|_| HeaderValue::from_static("max-age=0"))
}

/// The headers every answer gets last: the security headers, and no caching
/// of API answers that do not say otherwise.
fn finish(mut resp: Response, api: bool) -> Response {
    let h = resp.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    if api && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The checks before the request is answered (see [`FrontService`]); `Some`
/// is the refusal.
fn before(f: &Front, req: &Parts, info: &mut ConnInfo) -> Option<Response> {
    // 1. Declared body length.
    let limit = if req.uri.path().starts_with("/api/v1/certificate/upload")
        || req.uri.path() == "/api/v1/config/import"
    {
        f.upload_limit
    } else {
        f.body_limit
    };
    let declared = req
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let mut resp = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than the {limit} bytes allowed here"),
        )
        .into_response();
        // The unread body makes the connection unusable for a next request.
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Some(resp);
    }
    // 2. Client address and access control.
    let peer = info.peer.ip();
    let policy = f.rt.security().policy();
    let client = if policy.is_trusted_proxy(peer) {
        let forwarded = req
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        policy.client_ip(peer, forwarded)
    } else {
        peer
    };
    // CrowdSec's bans apply to the client a trusted proxy names too.
    if f.rt.security().decide_with(&policy, client) == portcullis_core::access_control::Decision::Deny {
        let mut resp = ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::AccessDenied,
            "access from this address is denied",
        )
        .into_response();
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Some(resp);
    }
    info.client = client;
    // 3. The host the request names.
    if let Some(refusal) = foreign_host(f, req) {
        return Some(refusal);
    }
    // 4. Redirect to HTTPS, as the port's policy says.
    // ACME validators must get their http-01 answer over plain HTTP.
    let running = f.rt.running();
    let ws = &running.webserver;
    let port_policy =
        ws.port_policy(portcullis_core::settings::ListenerSpec { port: info.local_port, tls: info.tls });
    if !info.tls
        && req.uri.path() != "/healthz"
        && !req.uri.path().starts_with("/.well-known/acme-challenge/")
        && port_policy.redirect_to_https
        && let Some(location) = https_location(req, ws.effective_https_port())
    {
        let mut resp = StatusCode::PERMANENT_REDIRECT.into_response();
        resp.headers_mut().insert(header::LOCATION, location);
        return Some(resp);
    }
    // 5. The admin UI and API, on a port whose policy refuses them (one
    // facing the Internet, say): a clear 403, not a 404 that would look like
    // a device without a UI.
    if !port_policy.admin && reserved_for_api_and_ui(req.uri.path()) {
        return Some(admin_not_allowed(info));
    }
    drop(running);
    // 6. Cross-site requests.
    if !is_safe(&req.method) && cross_site(req) {
        return Some(
            ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::CrossOriginRefused,
                "a request from another web site may not change this device",
            )
            .into_response(),
        );
    }
    None
}

/// The answer on a port that does not allow the admin UI and API: the JSON
/// error, for the UI's pages too (every error answer here is JSON, its
/// message in the language of `Accept-Language`).
fn admin_not_allowed(info: &ConnInfo) -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::AdminNotAllowed,
        format!(
            "the admin UI and API are not allowed on {} port {}; use a port whose settings allow admin",
            if info.tls { "HTTPS" } else { "HTTP" },
            info.local_port
        ),
    )
    .into_response()
}

/// The refusal of a request whose `Host` (or `:authority`) is not one of the
/// device's names: a page on a rebound DNS name would otherwise be
/// same-origin with the device in its victim's browser. `/healthz` (probes)
/// and ACME http-01 answers (validators ask for the name being validated,
/// not yet the certificate's) are exempt. A request without either (HTTP/1.0)
/// passes: browsers always send one.
fn foreign_host(f: &Front, req: &Parts) -> Option<Response> {
    use portcullis_core::hosts::{RequestHost, request_host};
    let path = req.uri.path();
    if path == "/healthz" || path.starts_with("/.well-known/acme-challenge/") {
        return None;
    }
    let header = req.headers.get(header::HOST).map(|h| h.to_str().unwrap_or(""));
    let authority = req.uri.authority().map(|a| a.as_str());
    for sent in header.into_iter().chain(authority) {
        let allowed = match request_host(sent) {
            RequestHost::Ip(_) => true,
            RequestHost::Invalid => false,
            RequestHost::Name(name) => f.rt.host_names().allows_name(
                name,
                &f.rt.certs().names(),
                &f.rt.running().webserver.allowed_hosts,
            ),
        };
        if !allowed {
            let shown: String = sent.chars().take(64).collect();
            tracing::debug!(host = ?shown, "request for a host that is not this device's refused");
            return Some(
                ApiError::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    ErrorCode::HostNotAllowed,
                    format!(
                        "this device does not answer for the host {shown:?}; an administrator can add the name to allowed_hosts (PUT /api/v1/webserver)"
                    ),
                )
                .into_response(),
            );
        }
    }
    None
}

/// The host the client asked for (HTTP/2 carries it in :authority, the URI).
fn request_host(req: &Parts) -> Option<String> {
    req.headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri.authority().map(|a| a.to_string()))
}

fn https_location(req: &Parts, port: u16) -> Option<HeaderValue> {
    let host = request_host(req)?;
    // Strip the port (an IPv6 literal keeps its brackets).
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host.as_str(),
    };
    let authority = if port == 443 { name.to_string() } else { format!("{name}:{port}") };
    let target = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    HeaderValue::from_str(&format!("https://{authority}{target}")).ok()
}

fn cross_site(req: &Parts) -> bool {
    let headers = &req.headers;
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return true;
    }
    match headers.get(header::ORIGIN) {
        None => false,
        Some(origin) => {
            let origin = origin.to_str().unwrap_or("null");
            let host = request_host(req).unwrap_or_default();
            match origin.split_once("://") {
                Some((_, origin_host)) => !origin_host.eq_ignore_ascii_case(&host),
                // "null" (sandboxed frames, file: pages) is never this device.
                None => true,
            }
        }
    }
}

/// Whether an answer is an error without a JSON body.
fn needs_json_error_body(resp: &Response) -> bool {
    let status = resp.status();
    (status.is_client_error() || status.is_server_error())
        && !resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
}

/// The error answer with the JSON error body, its text from the original
/// body: every error answer gets it, whoever made it (the router's 404/405, a
/// body limit's 413, an extractor's rejection).
async fn json_error_body(resp: Response) -> Response {
    let status = resp.status();
    let (mut parts, body) = resp.into_parts();
    let detail = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let detail = String::from_utf8_lossy(&detail).trim().to_string();
    let message =
        if detail.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { detail };
    let info = ErrorInfo { code: code_for_status(status), message, field: None };
    let body = ErrorBody {
        error: ErrorDetail { code: info.code, message: info.message.clone(), field: None, detail: None },
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.extensions.insert(info);
    Response::from_parts(parts, Body::from(bytes))
}

/// Any logged-in user (groups `admins` and `users`).
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Who.
    pub identity: Identity,
    /// Who and from where, for the event log.
    pub actor: Actor,
}

/// A logged-in member of `admins`.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Who.
    pub identity: Identity,
    /// Who and from where, for the event log.
    pub actor: Actor,
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let identity = parts.extensions.get::<Identity>().cloned().ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, "log in to use this resource")
        })?;
        let actor = Actor { user: Some(identity.user.clone()), client_ip: client_ip(&parts.extensions) };
        Ok(Self { identity, actor })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Viewer { identity, actor } = Viewer::from_request_parts(parts, state).await?;
        if identity.group != Group::Admins {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "only members of the group \"admins\" may do this",
            ));
        }
        Ok(Self { identity, actor })
    }
}

/// A JSON body parsed as operator input: unknown fields refused, errors name the field.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: portcullis_core::config::Input> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "send the body as application/json",
            ));
        }
        let read =
            tokio::time::timeout(BODY_READ_TIMEOUT, Bytes::from_request(req, state)).await.map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorCode::RequestTimeout,
                    format!("the request body did not arrive within {} seconds", BODY_READ_TIMEOUT.as_secs()),
                )
            })?;
        let bytes = read.map_err(|e| {
            let status = e.status();
            ApiError::new(status, code_for_status(status), e.body_text())
        })?;
        Ok(Self(portcullis_core::config::parse_input(&bytes)?))
    }
}
