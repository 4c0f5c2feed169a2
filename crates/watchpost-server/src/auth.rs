//! API-key authentication: [`Authenticator`] turns a presented key into a [`Principal`] or an
//! [`AuthFailure`] in the request extensions; [`AuthLayer`] runs it for every request.
//!
//! The layer never answers a request itself: endpoints decide what they need through
//! [`watchpost_core::authorize`], so a public endpoint stays public even when a client sends a
//! bad key, and a root-only endpoint refuses everyone when no root key exists. Paths whose
//! `Authorization` header belongs to someone else (the Alertmanager webhook, a `/metrics` scrape
//! token) are not looked at. Attempts are counted per result in [`AuthCounters`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{Request, Response};
use pin_project_lite::pin_project;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_layer::Layer;
use tower_service::Service;
use watchpost_core::{AuthFailure, Principal, RequestContext, Role};

use crate::keys::{ApiKeyRecord, ApiKeyStore, parse_key};

/// The result of an authentication attempt (the `result` label of `watchpost_auth_attempts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    /// A known, active key.
    Success = 0,
    /// An `Authorization`/`X-API-Key` value that is not a key.
    Malformed = 1,
    /// A well-formed key nobody issued.
    Unknown = 2,
    /// A revoked key.
    Revoked = 3,
    /// The key store could not answer.
    Error = 4,
}

impl AuthResult {
    /// Every result, in the order [`AuthCounters::snapshot`] gives them.
    pub const ALL: [AuthResult; 5] = [
        AuthResult::Success,
        AuthResult::Malformed,
        AuthResult::Unknown,
        AuthResult::Revoked,
        AuthResult::Error,
    ];

    /// The label text.
    pub fn label(self) -> &'static str {
        match self {
            AuthResult::Success => "success",
            AuthResult::Malformed => "malformed",
            AuthResult::Unknown => "unknown",
            AuthResult::Revoked => "revoked",
            AuthResult::Error => "error",
        }
    }

    /// The position in [`AuthResult::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Counts of authentication attempts by result (exported as `watchpost_auth_attempts_total{result}`).
#[derive(Debug, Default)]
pub struct AuthCounters {
    /// Indexed by [`AuthResult::index`].
    counts: [AtomicU64; AuthResult::ALL.len()],
}

impl AuthCounters {
    /// Counts `outcome`; its result, or `None` when it is not an attempt.
    fn count(&self, outcome: &Outcome) -> Option<AuthResult> {
        let result = match outcome {
            Outcome::Ok(_) => AuthResult::Success,
            Outcome::Refused(AuthFailure::Malformed) => AuthResult::Malformed,
            Outcome::Refused(AuthFailure::Unknown) => AuthResult::Unknown,
            Outcome::Refused(AuthFailure::Revoked) => AuthResult::Revoked,
            Outcome::Refused(AuthFailure::Missing) => return None,
            Outcome::StoreError => AuthResult::Error,
        };
        self.counts[result.index()].fetch_add(1, Ordering::Relaxed);
        Some(result)
    }

    /// `(result, count)` pairs: success, malformed, unknown, revoked, error.
    pub fn snapshot(&self) -> [(&'static str, u64); AuthResult::ALL.len()] {
        AuthResult::ALL.map(|r| (r.label(), self.counts[r.index()].load(Ordering::Relaxed)))
    }
}

enum Outcome {
    Ok(Principal),
    Refused(AuthFailure),
    /// The store could not answer: treated as unknown for the request, counted apart.
    StoreError,
}

/// Checks presented keys against the root key and the key store.
pub struct Authenticator {
    root_key_hash: Option<[u8; 32]>,
    /// Built once: a request with the root key gets a clone (shared text, no allocation).
    root_principal: Principal,
    store: Arc<dyn ApiKeyStore>,
    cache: Option<moka::sync::Cache<String, Option<ApiKeyRecord>>>,
    counters: Arc<AuthCounters>,
    skip_exact: Vec<String>,
    skip_prefixes: Vec<String>,
    on_attempt: Option<AttemptObserver>,
}

/// Called with the result of every authentication attempt (for metrics).
pub type AttemptObserver = Arc<dyn Fn(AuthResult) + Send + Sync>;

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("root_key", &self.root_key_hash.map(|_| "<set>"))
            .field("store", &self.store)
            .field("cached", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// The principal of the configured root key.
pub const ROOT_KEY_ID: &str = "root";

impl Authenticator {
    /// An authenticator for `root_key` (if any) and `store`, caching lookups for `cache_ttl` (zero: no cache).
    pub fn new(root_key: Option<&str>, store: Arc<dyn ApiKeyStore>, cache_ttl: Duration) -> Self {
        let cache = (!cache_ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cache_ttl)
                .build()
        });
        Self {
            root_key_hash: root_key.map(|k| Sha256::digest(k.as_bytes()).into()),
            root_principal: Principal::new(ROOT_KEY_ID, "root", None, Role::Root),
            store,
            cache,
            counters: Arc::new(AuthCounters::default()),
            skip_exact: vec!["/metrics".to_owned()],
            skip_prefixes: vec!["/webhooks/".to_owned()],
            on_attempt: None,
        }
    }

    /// Also reports every attempt's result to `observer`.
    #[must_use]
    pub fn with_attempt_observer(mut self, observer: AttemptObserver) -> Self {
        self.on_attempt = Some(observer);
        self
    }

    /// The attempt counters.
    pub fn counters(&self) -> Arc<AuthCounters> {
        self.counters.clone()
    }

    /// Whether a root key is configured in the environment.
    pub fn has_root_key(&self) -> bool {
        self.root_key_hash.is_some()
    }

    /// Drops any cached lookup of key `id` (after a revocation through this process).
    pub async fn forget(&self, id: &str) {
        if let Some(cache) = &self.cache {
            cache.invalidate(id);
        }
    }

    fn skips(&self, path: &str) -> bool {
        self.skip_exact.iter().any(|p| p == path)
            || self.skip_prefixes.iter().any(|p| path.starts_with(p))
    }

    /// What can be decided without I/O: a skipped path, no or a malformed credential, the root
    /// key, a cached key. Anything else needs the store: [`Step::Lookup`].
    fn decide_now(&self, headers: &http::HeaderMap, path: &str) -> Step {
        if self.skips(path) {
            return Step::Skip;
        }
        let key = match credential(headers) {
            Credential::None => return Step::Skip,
            Credential::Invalid => return Step::Decided(Outcome::Refused(AuthFailure::Malformed)),
            Credential::Key(key) => key,
        };
        if let Some(root) = &self.root_key_hash {
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            if bool::from(digest.ct_eq(root)) {
                return Step::Decided(Outcome::Ok(self.root_principal.clone()));
            }
        }
        let Some((id, secret)) = parse_key(key) else {
            return Step::Decided(Outcome::Refused(AuthFailure::Malformed));
        };
        if let Some(cache) = &self.cache
            && let Some(hit) = cache.get(id)
        {
            return Step::Decided(judge(hit, secret));
        }
        Step::Lookup {
            id: id.to_owned(),
            secret: secret.to_owned(),
        }
    }

    /// The store's answer for a well-formed key (`id`, `secret`) that is neither root nor cached.
    async fn look_up(&self, id: &str, secret: &str) -> Outcome {
        let found = match self.store.get(id).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "API key lookup failed");
                return Outcome::StoreError;
            }
        };
        if let Some(cache) = &self.cache {
            cache.insert(id.to_owned(), found.clone());
        }
        judge(found, secret)
    }

    /// Authenticates the request's credential into its extensions.
    pub async fn authenticate<B>(&self, request: &mut Request<B>) {
        match self.decide_now(request.headers(), request.uri().path()) {
            Step::Skip => {}
            Step::Decided(outcome) => self.apply(request, outcome),
            Step::Lookup { id, secret } => {
                let outcome = self.look_up(&id, &secret).await;
                self.apply(request, outcome);
            }
        }
    }

    /// Counts `outcome` and records it in the request's extensions.
    fn apply<B>(&self, request: &mut Request<B>, outcome: Outcome) {
        let result = self.counters.count(&outcome);
        if let (Some(observe), Some(result)) = (&self.on_attempt, result) {
            observe(result);
        }
        match outcome {
            Outcome::Ok(principal) => {
                if let Some(ctx) = request.extensions_mut().get_mut::<RequestContext>() {
                    ctx.principal = Some(principal.clone());
                }
                request.extensions_mut().insert(principal);
            }
            Outcome::Refused(failure) => {
                tracing::warn!(reason = failure.as_str(), "API key refused");
                request.extensions_mut().insert(failure);
            }
            Outcome::StoreError => {
                request.extensions_mut().insert(AuthFailure::Unknown);
            }
        }
    }
}

/// The first, synchronous step of authentication.
enum Step {
    /// Nothing to authenticate (no credential, or a path whose credential is someone else's).
    Skip,
    /// Decided without I/O.
    Decided(Outcome),
    /// A well-formed key, split into its id and secret, the store has to answer for.
    Lookup { id: String, secret: String },
}

/// A stored record (or none) against the presented secret.
fn judge(record: Option<ApiKeyRecord>, secret: &str) -> Outcome {
    match record {
        None => Outcome::Refused(AuthFailure::Unknown),
        Some(record) if !record.secret_matches(secret) => Outcome::Refused(AuthFailure::Unknown),
        Some(record) if record.revoked_at.is_some() => Outcome::Refused(AuthFailure::Revoked),
        Some(record) => Outcome::Ok(Principal::new(
            record.id,
            record.name,
            record.tenant_id,
            record.role,
        )),
    }
}

enum Credential<'a> {
    None,
    Invalid,
    Key(&'a str),
}

/// `Authorization: Bearer <key>` first, then `X-API-Key`. Oversized or non-text values are invalid.
fn credential(headers: &http::HeaderMap) -> Credential<'_> {
    const MAX_KEY_LEN: usize = 512;
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let Ok(v) = v.to_str() else {
            return Credential::Invalid;
        };
        let Some((scheme, token)) = v.split_once(' ') else {
            return Credential::Invalid;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Credential::Invalid;
        }
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_KEY_LEN {
            return Credential::Invalid;
        }
        return Credential::Key(token);
    }
    if let Some(v) = headers.get("x-api-key") {
        return match v.to_str() {
            Ok(k) if !k.trim().is_empty() && k.len() <= MAX_KEY_LEN => Credential::Key(k.trim()),
            _ => Credential::Invalid,
        };
    }
    Credential::None
}

/// Runs an [`Authenticator`] on every request.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// A layer over `auth`.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S> Auth<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let key = match self
            .auth
            .decide_now(request.headers(), request.uri().path())
        {
            Step::Skip => None,
            Step::Decided(outcome) => {
                self.auth.apply(&mut request, outcome);
                None
            }
            Step::Lookup { id, secret } => Some((id, secret)),
        };
        let Some((id, secret)) = key else {
            // Decided without I/O: no clone of the inner service, no boxed future.
            let principal = request.extensions().get::<Principal>().cloned();
            return ResponseFuture {
                state: AuthState::Inner {
                    future: self.inner.call(request),
                    principal,
                },
            };
        };
        // The store must answer: take the service that was polled ready, leave a clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        ResponseFuture {
            state: AuthState::LookingUp {
                future: Box::pin(async move {
                    let outcome = auth.look_up(&id, &secret).await;
                    auth.apply(&mut request, outcome);
                    let principal = request.extensions().get::<Principal>().cloned();
                    let mut response = inner.call(request).await?;
                    if let Some(principal) = principal {
                        response.extensions_mut().insert(principal);
                    }
                    Ok(response)
                }),
            },
        }
    }
}

pin_project! {
    #[project = AuthStateProj]
    enum AuthState<F, R, E> {
        Inner { #[pin] future: F, principal: Option<Principal> },
        LookingUp { future: BoxFuture<'static, Result<R, E>> },
    }
}

pin_project! {
    /// The response future of [`Auth`]: the inner future when the key was decided without I/O,
    /// a boxed lookup-then-call otherwise. Either way the principal is put into the response's
    /// extensions, so outer layers (the request log line, audit) learn who called.
    pub struct ResponseFuture<F, R, E> {
        #[pin]
        state: AuthState<F, R, E>,
    }
}

impl<F, R, E> fmt::Debug for ResponseFuture<F, R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for ResponseFuture<F, Response<RB>, E>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            AuthStateProj::Inner { future, principal } => {
                let mut response = ready!(future.poll(cx))?;
                if let Some(principal) = principal.take() {
                    response.extensions_mut().insert(principal);
                }
                Poll::Ready(Ok(response))
            }
            AuthStateProj::LookingUp { future } => future.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{MemoryKeyStore, generate};

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn each_result_indexes_its_place_in_all_and_keeps_its_label() {
        for (i, r) in AuthResult::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
        assert_eq!(
            AuthResult::ALL.map(AuthResult::label),
            ["success", "malformed", "unknown", "revoked", "error"]
        );
    }

    #[tokio::test]
    async fn outcomes_and_counts() {
        let store = Arc::new(MemoryKeyStore::default());
        let k = generate("t", Some("acme".into()), Role::Tenant, chrono::Utc::now());
        store.insert(k.record.clone()).await.unwrap();
        let auth = Authenticator::new(Some("0123456789abcdef-root"), store.clone(), Duration::ZERO);

        let mut r = req(&[("authorization", "Bearer 0123456789abcdef-root")]);
        auth.authenticate(&mut r).await;
        assert!(r.extensions().get::<Principal>().unwrap().is_root());

        let mut r = req(&[("x-api-key", &k.key)]);
        auth.authenticate(&mut r).await;
        assert_eq!(
            r.extensions()
                .get::<Principal>()
                .unwrap()
                .tenant_id
                .as_deref(),
            Some("acme")
        );

        let mut r = req(&[("authorization", "Basic abc")]);
        auth.authenticate(&mut r).await;
        assert_eq!(
            r.extensions().get::<AuthFailure>(),
            Some(&AuthFailure::Malformed)
        );

        let wrong = format!("{}_{}", &k.key[..16], "A".repeat(43));
        let mut r = req(&[("authorization", &format!("Bearer {wrong}"))]);
        auth.authenticate(&mut r).await;
        assert_eq!(
            r.extensions().get::<AuthFailure>(),
            Some(&AuthFailure::Unknown)
        );

        store
            .revoke(&k.record.id, chrono::Utc::now())
            .await
            .unwrap();
        let mut r = req(&[("x-api-key", &k.key)]);
        auth.authenticate(&mut r).await;
        assert_eq!(
            r.extensions().get::<AuthFailure>(),
            Some(&AuthFailure::Revoked)
        );

        let mut r = req(&[]);
        auth.authenticate(&mut r).await;
        assert!(
            r.extensions().get::<AuthFailure>().is_none()
                && r.extensions().get::<Principal>().is_none()
        );

        let snap = auth.counters().snapshot();
        assert_eq!(
            snap,
            [
                ("success", 2),
                ("malformed", 1),
                ("unknown", 1),
                ("revoked", 1),
                ("error", 0)
            ]
        );
    }

    #[tokio::test]
    async fn webhook_and_scrape_paths_are_not_authenticated() {
        let auth = Authenticator::new(None, Arc::new(MemoryKeyStore::default()), Duration::ZERO);
        let mut r = Request::builder()
            .uri("/webhooks/alertmanager")
            .header("authorization", "Bearer am-token")
            .body(())
            .unwrap();
        auth.authenticate(&mut r).await;
        assert!(r.extensions().get::<AuthFailure>().is_none());
        assert_eq!(auth.counters().snapshot()[2].1, 0);
    }
}
