//! HTTP: the web root, `/api/servers`, `/healthz`, `/metrics` and `/ws`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get};
use dumdum_protocol::session::SUBPROTOCOL;
use serde::Serialize;
use tokio::net::TcpListener;
use tower_http::services::ServeDir;

use crate::app::{App, Peer};
use crate::config::unmap;
use crate::tls::{LimitedListener, TlsListener};
use crate::wsio::Upgrade;

/// The client's address, for both plain and TLS listeners.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<axum::serve::IncomingStream<'_, TcpListener>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl Connected<axum::serve::IncomingStream<'_, LimitedListener>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, LimitedListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl Connected<axum::serve::IncomingStream<'_, TlsListener>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

pub(crate) fn router(app: Arc<App>) -> Router {
    let cors = || middleware::from_fn_with_state(app.clone(), cors_for_allowed_origins);
    Router::new()
        .route("/api/servers", get(servers).layer(cors()))
        .route("/healthz", get(healthz).layer(cors()))
        .route("/metrics", get(metrics))
        .route("/ws", any(ws))
        .fallback(static_files)
        .layer(middleware::from_fn_with_state(
            app.clone(),
            security_headers,
        ))
        .with_state(app)
}

/// Adds the security headers (see [`crate::headers`]) to every response:
/// the page's and the API's. The CSP's WebSocket origin is this bridge's
/// own origin as the browser sees it, behind trusted proxies too.
async fn security_headers(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let proxied = req
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .is_some_and(|ConnectInfo(ClientAddr(peer))| client_of(&app, *peer, req.headers()).1);
    let own = own_origin(req.headers(), app.https, proxied);
    let mut resp = next.run(req).await;
    let csp = crate::headers::content_security_policy(own.as_deref());
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static(crate::headers::NOSNIFF),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static(crate::headers::REFERRER_POLICY),
    );
    resp
}

#[derive(Serialize)]
struct ServerEntry<'a> {
    name: &'a str,
    tls: bool,
    default: bool,
}

async fn servers(State(app): State<Arc<App>>) -> Response {
    let list: Vec<ServerEntry<'_>> = app
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| ServerEntry {
            name: &u.name,
            tls: u.advertised_tls,
            default: i == 0,
        })
        .collect();
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(list)).into_response()
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    if app.stop.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if app.drain.is_cancelled() {
        // 404, not 5xx: a load balancer (HAProxy's disable-on-404) stops
        // sending new sessions but still routes resumes here.
        (StatusCode::NOT_FOUND, "draining\n").into_response()
    } else {
        "ok\n".into_response()
    }
}

async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
        .into_response()
}

/// The `Access-Control-Allow-Origin` for a request with these headers:
/// its `Origin` when the operator allowed that origin explicitly (a page
/// served elsewhere, such as `trunk serve` in development, that may use
/// this bridge), `None` otherwise. The bridge's own origin needs no CORS.
pub(crate) fn cors_origin(headers: &HeaderMap, allowed: &[String]) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?.trim_end_matches('/');
    allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(text))
        .then(|| origin.clone())
}

/// Lets the allowed origins read the bridge's small public answers
/// (`/api/servers`, `/healthz`) across origins: simple GETs, so no
/// preflight, no credentials. Other origins get no grant (their pages
/// cannot read the answer; the request itself is harmless).
async fn cors_for_allowed_origins(
    State(app): State<Arc<App>>,
    req: Request,
    next: Next,
) -> Response {
    let allow = cors_origin(req.headers(), &app.config.allowed_origins);
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(origin) = allow {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    resp
}

/// The first value of a header (the first of a comma-separated list, as
/// the first proxy wrote it), trimmed; `None` when absent or empty.
fn first_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let v = headers.get(name)?.to_str().ok()?;
    let first = v.split(',').next()?.trim();
    (!first.is_empty()).then_some(first)
}

/// The bridge's own origin as the browser sees it (`scheme://host[:port]`,
/// lower case, without a default port): from `Host` and the listener's
/// scheme; behind a trusted proxy (`proxied`), from `X-Forwarded-Proto` and
/// `X-Forwarded-Host` (or `Host`) instead.
pub(crate) fn own_origin(headers: &HeaderMap, https: bool, proxied: bool) -> Option<String> {
    let mut scheme = if https { "https" } else { "http" };
    let mut host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if proxied {
        match first_value(headers, "x-forwarded-proto").map(str::to_ascii_lowercase) {
            Some(p) if p == "https" => scheme = "https",
            Some(p) if p == "http" => scheme = "http",
            _ => {}
        }
        if let Some(h) = first_value(headers, "x-forwarded-host") {
            host = Some(h);
        }
    }
    let host = host?.trim().to_ascii_lowercase();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host = host.strip_suffix(default_port).unwrap_or(&host);
    if host.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{host}"))
}

/// Whether a WebSocket upgrade with these headers may proceed, given the
/// bridge's own origin (see [`own_origin`]).
pub(crate) fn origin_allowed(headers: &HeaderMap, own: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true; // not a browser
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(&origin))
    {
        return true;
    }
    own.is_some_and(|own| origin == own)
}

/// One `X-Forwarded-For` entry: an address, maybe with a port
/// (`192.0.2.1:5000`, `[2001:db8::1]:5000`) or in brackets.
fn xff_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(unmap(ip));
    }
    if let Ok(sa) = entry.parse::<SocketAddr>() {
        return Some(unmap(sa.ip()));
    }
    let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(unmap)
}

/// The client address a trusted proxy forwarded: the rightmost entry of
/// `X-Forwarded-For` (all such headers, in order) that is not itself a
/// trusted proxy, or the leftmost when all are. `None` without the header
/// or when any entry is malformed (then the TCP peer is the client).
pub(crate) fn forwarded_client(
    headers: &HeaderMap,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    let mut entries = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        for entry in value.to_str().ok()?.split(',') {
            entries.push(xff_entry(entry)?);
        }
    }
    entries
        .iter()
        .rev()
        .find(|ip| !is_trusted(**ip))
        .or_else(|| entries.first())
        .copied()
}

/// Who a request comes from: the forwarded client when the TCP peer is a
/// trusted proxy that says, else the peer; and whether it was proxied.
pub(crate) fn client_of(app: &App, peer: SocketAddr, headers: &HeaderMap) -> (Peer, bool) {
    if !app.config.is_trusted_proxy(peer.ip()) {
        return (peer.into(), false);
    }
    let client = forwarded_client(headers, |ip| app.config.is_trusted_proxy(ip))
        .map_or_else(|| peer.into(), |ip| Peer { ip, port: None });
    (client, true)
}

/// The host part of a `Host` header or an origin's authority (brackets of
/// an IPv6 literal removed, port and a trailing dot dropped), lower case.
fn host_part(authority: &str) -> String {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a WebSocket upgrade to a bridge listening on loopback may
/// proceed: its `Host` must be a loopback name, or the host of an allowed
/// origin. Otherwise a page of any site whose name an attacker rebinds to
/// 127.0.0.1 would be "same origin" (the origin check trusts `Host`).
pub(crate) fn loopback_host_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let host = host_part(host.trim());
    if host == "localhost" {
        return true;
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>()
        && ip.is_loopback()
    {
        return true;
    }
    allowed.iter().any(|origin| {
        let authority = origin.split_once("://").map_or(origin.as_str(), |(_, a)| a);
        host_part(authority.trim_end_matches('/')) == host
    })
}

async fn ws(
    State(app): State<Arc<App>>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    mut req: Request,
) -> Response {
    let headers = req.headers();
    // `/ws?node=NAME` is for the load balancer; the bridge ignores it.
    let (client, proxied) = client_of(&app, peer, headers);
    // Behind a trusted proxy, the proxy decides which names reach the bridge.
    if app.loopback && !proxied && !loopback_host_allowed(headers, &app.config.allowed_origins) {
        app.metrics.origin_refused.increment(1);
        tracing::info!(
            client = %client,
            host = ?headers.get(header::HOST),
            "WebSocket refused: Host is not a loopback name on a loopback listener (DNS rebinding?)"
        );
        return (StatusCode::FORBIDDEN, "host not allowed\n").into_response();
    }
    let own = own_origin(headers, app.https, proxied);
    if !origin_allowed(headers, own.as_deref(), &app.config.allowed_origins) {
        app.metrics.origin_refused.increment(1);
        tracing::info!(
            client = %client,
            origin = ?headers.get(header::ORIGIN),
            own = ?own,
            "WebSocket refused: origin not allowed"
        );
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    if app.stop.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let upgrade = match Upgrade::from_request(&mut req, SUBPROTOCOL) {
        Ok(u) => u,
        Err(refused) => return refused.into_response(),
    };
    let guard = app.ip_guard(client.ip);
    let response = upgrade.response();
    let tracker = app.tracker.clone();
    tracker.spawn(async move {
        match upgrade.connection(app.config.max_frame_size).await {
            Ok(ws) => crate::ws::handle(ws, app, client, guard).await,
            Err(e) => tracing::debug!(client = %client, error = %e, "WebSocket upgrade failed"),
        }
    });
    response
}

const NO_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dumdum bridge</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>The dumdum bridge is running</h1>
<p>But the web page is not built: the web root has no <code>index.html</code>.</p>
<p>Build it with <code>cargo xtask dist</code> (it writes <code>target/www/</code>),
or point the bridge at a built page with <code>--www DIR</code>, then reload.</p>
<p>The bridge itself works: <a href="/api/servers">/api/servers</a>,
<a href="/healthz">/healthz</a>, <a href="/metrics">/metrics</a>.</p>
</body></html>
"#;

async fn static_files(State(app): State<Arc<App>>, req: Request) -> Response {
    if app.config.embedded_page
        && let Some(page) = crate::assets::embedded()
    {
        return crate::assets::serve(page, req.method(), req.uri().path(), req.headers())
            .unwrap_or_else(|| StatusCode::NOT_FOUND.into_response());
    }
    let path = req.uri().path().to_owned();
    if (path == "/" || path == "/index.html") && !app.config.www.join("index.html").is_file() {
        return Html(NO_PAGE).into_response();
    }
    // `cargo xtask dist` writes `.br` and `.gz` beside each compressible
    // file; ServeDir picks one by `Accept-Encoding` (q-values included).
    match ServeDir::new(&app.config.www)
        .precompressed_br()
        .precompressed_gzip()
        .try_call(req)
        .await
    {
        Ok(resp) => {
            let mut resp = resp.map(Body::new);
            let status = resp.status();
            if status.is_success() || status == StatusCode::NOT_MODIFIED {
                let h = resp.headers_mut();
                h.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(crate::headers::cache_control(&path)),
                );
                if crate::headers::compressible(&path) {
                    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
                }
            }
            resp
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&'static str>, host: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static(host));
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_static(o));
        }
        h
    }

    #[test]
    fn loopback_hosts() {
        let none: &[String] = &[];
        for ok in [
            "localhost:8080",
            "LOCALHOST",
            "localhost.:80",
            "127.0.0.1:8080",
            "127.3.4.5",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(loopback_host_allowed(&headers(None, ok), none), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "evil.example",
            "10.0.0.1:8080",
            "[::2]:8080",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
        ] {
            assert!(!loopback_host_allowed(&headers(None, bad), none), "{bad}");
        }
        let allowed = vec!["https://chat.example.org".to_string()];
        assert!(loopback_host_allowed(
            &headers(None, "chat.example.org:8443"),
            &allowed
        ));
        assert!(!loopback_host_allowed(&HeaderMap::new(), none), "no Host");
    }

    #[test]
    fn cors_only_for_explicitly_allowed_origins() {
        let allowed = vec!["http://127.0.0.1:8081/".to_string()];
        assert_eq!(
            cors_origin(
                &headers(Some("http://127.0.0.1:8081"), "127.0.0.1:8080"),
                &allowed
            ),
            Some(HeaderValue::from_static("http://127.0.0.1:8081"))
        );
        for other in ["http://127.0.0.1:8082", "http://evil.example", "null"] {
            assert_eq!(
                cors_origin(&headers(Some(other), "127.0.0.1:8080"), &allowed),
                None,
                "{other}"
            );
        }
        // The bridge's own origin needs (and gets) no grant.
        assert_eq!(
            cors_origin(
                &headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"),
                &[]
            ),
            None
        );
        assert_eq!(
            cors_origin(&headers(None, "127.0.0.1:8080"), &allowed),
            None
        );
    }

    /// `origin_allowed` with the own origin worked out as `ws` does.
    fn allowed(h: &HeaderMap, https: bool, proxied: bool, extra: &[String]) -> bool {
        origin_allowed(h, own_origin(h, https, proxied).as_deref(), extra)
    }

    #[test]
    fn origin_policy() {
        let none: &[String] = &[];
        assert!(allowed(
            &headers(None, "127.0.0.1:8080"),
            false,
            false,
            none
        ));
        assert!(allowed(
            &headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"),
            false,
            false,
            none
        ));
        assert!(!allowed(
            &headers(Some("https://127.0.0.1:8080"), "127.0.0.1:8080"),
            false,
            false,
            none
        ));
        assert!(!allowed(
            &headers(Some("http://evil.example"), "127.0.0.1:8080"),
            false,
            false,
            none
        ));
        let extra = vec!["http://evil.example".to_string()];
        assert!(allowed(
            &headers(Some("http://evil.example"), "127.0.0.1:8080"),
            false,
            false,
            &extra
        ));
    }

    fn with(mut h: HeaderMap, name: &'static str, value: &'static str) -> HeaderMap {
        h.append(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn own_origin_behind_a_tls_terminating_proxy() {
        let h = with(
            headers(Some("https://chat.example.org"), "127.0.0.1:8080"),
            "x-forwarded-proto",
            "https",
        );
        let h = with(h, "x-forwarded-host", "chat.example.org");
        assert_eq!(
            own_origin(&h, false, true).as_deref(),
            Some("https://chat.example.org")
        );
        assert!(allowed(&h, false, true, &[]), "its own https page");
        // The same headers from a peer that is not a trusted proxy.
        assert_eq!(
            own_origin(&h, false, false).as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert!(!allowed(&h, false, false, &[]));
        // No X-Forwarded-Host: the Host the proxy passed on; a default
        // port is not part of an origin.
        let h = with(
            headers(Some("https://chat.example.org"), "Chat.Example.org:443"),
            "x-forwarded-proto",
            "HTTPS, http",
        );
        assert!(allowed(&h, false, true, &[]));
        // A scheme other than http(s) is not believed.
        let h = with(
            headers(Some("http://chat.example.org"), "chat.example.org"),
            "x-forwarded-proto",
            "gopher",
        );
        assert_eq!(
            own_origin(&h, false, true).as_deref(),
            Some("http://chat.example.org")
        );
        assert_eq!(own_origin(&HeaderMap::new(), false, true), None);
    }

    #[test]
    fn forwarded_for_takes_the_rightmost_untrusted_address() {
        let trusted = |ip: IpAddr| {
            ["10.0.0.1", "10.0.0.2"]
                .iter()
                .any(|t| t.parse::<IpAddr>().ok() == Some(ip))
        };
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        let xff = |v: &'static str| with(HeaderMap::new(), "x-forwarded-for", v);
        assert_eq!(
            forwarded_client(&xff("198.51.100.9, 203.0.113.7, 10.0.0.2"), trusted),
            ip("203.0.113.7"),
            "a client cannot choose its address by prepending one"
        );
        assert_eq!(
            forwarded_client(&xff("203.0.113.7"), trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            forwarded_client(&xff("10.0.0.1, 10.0.0.2"), trusted),
            ip("10.0.0.1"),
            "all trusted: the leftmost"
        );
        // Ports, brackets, IPv4-mapped IPv6, several headers in order.
        assert_eq!(
            forwarded_client(&xff("[2001:db8::7]:4711"), trusted),
            ip("2001:db8::7")
        );
        assert_eq!(
            forwarded_client(&xff("192.0.2.5:5000"), trusted),
            ip("192.0.2.5")
        );
        assert_eq!(
            forwarded_client(&xff("[2001:db8::8]"), trusted),
            ip("2001:db8::8")
        );
        assert_eq!(
            forwarded_client(&xff("::ffff:192.0.2.6"), trusted),
            ip("192.0.2.6")
        );
        let two = with(xff("192.0.2.1"), "x-forwarded-for", "192.0.2.2, 10.0.0.1");
        assert_eq!(forwarded_client(&two, trusted), ip("192.0.2.2"));
        // Malformed or absent: None (the TCP peer is the client).
        for bad in [
            "unknown",
            "192.0.2.1, , 10.0.0.1",
            "",
            "192.0.2.1 10.0.0.1",
            "_hidden",
        ] {
            assert_eq!(forwarded_client(&xff(bad), trusted), None, "{bad:?}");
        }
        assert_eq!(forwarded_client(&HeaderMap::new(), trusted), None);
    }
}
