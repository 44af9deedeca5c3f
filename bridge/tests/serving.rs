//! How the bridge serves the page, read with a plain HTTP/1.1 client: every
//! file of the bundle `cargo xtask dist` built in brotli, gzip or as is by
//! `Accept-Encoding` (the bodies decode to the file), its Cache-Control by
//! file class, revalidation (304), and the security headers on the page and
//! the API. With `--features embed-page` (`cargo xtask test` sets the table
//! of the page it built) the page inside the binary is checked the same way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser_kit;
mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;

use dumdum_bridge::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{Bridge, WAIT};

/// One HTTP response.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body with its `Content-Encoding` undone.
    fn decoded(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.header("content-encoding") {
            None => out.clone_from(&self.body),
            Some("gzip") => {
                flate2::read::GzDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .expect("valid gzip");
            }
            Some("br") => {
                brotli::Decompressor::new(&self.body[..], 4096)
                    .read_to_end(&mut out)
                    .expect("valid brotli");
            }
            Some(other) => panic!("unexpected Content-Encoding {other}"),
        }
        out
    }
}

/// Undoes `Transfer-Encoding: chunked`.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
    panic!("too many chunks");
}

/// `GET path` with `headers` over a fresh connection.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("the response in time")
        .unwrap();
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut resp = Resp {
        status,
        headers,
        body: raw[head_end + 4..].to_vec(),
    };
    if resp.header("transfer-encoding") == Some("chunked") {
        resp.body = dechunk(&resp.body);
    }
    resp
}

/// The directives of a Content-Security-Policy.
fn directives(csp: &str) -> BTreeMap<String, Vec<String>> {
    csp.split(';')
        .filter_map(|d| {
            let mut words = d.split_whitespace();
            let name = words.next()?.to_ascii_lowercase();
            Some((name, words.map(str::to_owned).collect()))
        })
        .collect()
}

/// Checks the security headers of `r`, whose page's WebSocket origin is
/// `ws_origin`.
fn assert_security_headers(r: &Resp, what: &str, ws_origin: &str) {
    let csp = r
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"));
    let d = directives(csp);
    let has = |name: &str, sources: &[&str]| {
        let got = d
            .get(name)
            .unwrap_or_else(|| panic!("{what}: no {name} in {csp}"));
        for s in sources {
            assert!(
                got.iter().any(|g| g == s),
                "{what}: {name} lacks {s}: {csp}"
            );
        }
        got.clone()
    };
    assert_eq!(has("default-src", &["'self'"]), ["'self'"], "{what}");
    assert_eq!(
        has("script-src", &["'self'", "'wasm-unsafe-eval'"]),
        ["'self'", "'wasm-unsafe-eval'"],
        "{what}: scripts from this origin only, no inline script"
    );
    assert_eq!(
        has("connect-src", &["'self'", ws_origin]),
        ["'self'", ws_origin],
        "{what}"
    );
    assert_eq!(has("frame-ancestors", &["'none'"]), ["'none'"], "{what}");
    assert_eq!(has("style-src", &["'self'"]), ["'self'"], "{what}");
    assert_eq!(has("object-src", &["'none'"]), ["'none'"], "{what}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
}

/// The Cache-Control a file of the bundle must get.
fn expected_cache(name: &str) -> &'static str {
    let hashed = ["dumdum-", "styles-", "boot-"].iter().any(|p| {
        name.strip_prefix(p).is_some_and(|rest| {
            let hash: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
            hash.len() == 16
        })
    });
    if matches!(name, "index.html" | "sw.js" | "manifest.webmanifest") {
        "no-cache"
    } else if hashed {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=3600"
    }
}

fn compressible(name: &str) -> bool {
    [
        ".html",
        ".js",
        ".css",
        ".wasm",
        ".svg",
        ".webmanifest",
        ".json",
    ]
    .iter()
    .any(|e| name.ends_with(e))
}

/// One file of the page at `path`, whose bytes are `raw`: served in each
/// encoding the client accepts (when the server has it), with its cache
/// policy and the security headers. Returns (raw, br, gzip) sizes on the wire.
async fn check_file(
    addr: SocketAddr,
    path: &str,
    name: &str,
    raw: &[u8],
    has: (bool, bool),
) -> (usize, usize, usize) {
    let (has_br, has_gz) = has;
    let mut sizes = (0, 0, 0);
    for (accept, want) in [
        (
            Some("gzip, deflate, br"),
            has_br.then_some("br").or(has_gz.then_some("gzip")),
        ),
        (Some("gzip"), has_gz.then_some("gzip")),
        (Some("br;q=0, gzip;q=0.8"), has_gz.then_some("gzip")),
        (Some("identity"), None),
        (None, None),
    ] {
        let headers: Vec<(&str, &str)> =
            accept.map(|a| ("accept-encoding", a)).into_iter().collect();
        let r = get(addr, path, &headers).await;
        let what = format!("{path} (Accept-Encoding: {accept:?})");
        assert_eq!(r.status, 200, "{what}");
        assert_eq!(r.header("content-encoding"), want, "{what}");
        assert_eq!(r.decoded(), raw, "{what}: the bytes decode to the file");
        assert_eq!(
            r.header("cache-control"),
            Some(expected_cache(name)),
            "{what}"
        );
        if compressible(name) {
            assert!(
                r.header("vary")
                    .is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")),
                "{what}: Vary: Accept-Encoding"
            );
        }
        assert_security_headers(&r, &what, &format!("ws://{addr}"));
        match want {
            Some("br") => sizes.1 = r.body.len(),
            Some("gzip") => sizes.2 = r.body.len(),
            _ => sizes.0 = r.body.len(),
        }
    }
    let ct = get(addr, path, &[]).await;
    let content_type = ct.header("content-type").unwrap_or("");
    let want_type = match name.rsplit_once('.').map(|(_, e)| e) {
        Some("wasm") => "application/wasm",
        Some("js") => "javascript",
        Some("html") => "text/html",
        Some("css") => "text/css",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "",
    };
    assert!(
        content_type.contains(want_type),
        "{path}: Content-Type {content_type}"
    );
    sizes
}

/// The files of the built page (not its .br/.gz copies).
fn page_files(www: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(www)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".br") && !n.ends_with(".gz"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_www_directory_by_accept_encoding_with_cache_policy_and_headers() {
    let www = browser_kit::bundle();
    let bridge = Bridge::start(Config {
        www: www.clone(),
        embedded_page: false,
        ..Config::default()
    })
    .await;
    let names = page_files(&www);
    for needed in [
        "index.html",
        "sw.js",
        "manifest.webmanifest",
        "icon-192.png",
    ] {
        assert!(names.iter().any(|n| n == needed), "the bundle has {needed}");
    }
    println!("{:<34} {:>9} {:>9} {:>9}", "file", "identity", "br", "gzip");
    for name in &names {
        let raw = std::fs::read(www.join(name)).unwrap();
        let has = (
            www.join(format!("{name}.br")).is_file(),
            www.join(format!("{name}.gz")).is_file(),
        );
        // dist keeps a form only when it is smaller: any file of some size.
        if compressible(name) && raw.len() > 256 {
            assert_eq!(has, (true, true), "dist wrote {name}.br and {name}.gz");
        }
        let sizes = check_file(bridge.addr, &format!("/{name}"), name, &raw, has).await;
        println!("{name:<34} {:>9} {:>9} {:>9}", sizes.0, sizes.1, sizes.2);
        if name.ends_with(".wasm") {
            assert!(
                sizes.1 * 2 < sizes.0,
                "the wasm in brotli is under half its size"
            );
        }
    }
    // `/` is index.html.
    let index = std::fs::read(www.join("index.html")).unwrap();
    check_file(bridge.addr, "/", "index.html", &index, (true, true)).await;

    // The page's markup works under the CSP: no inline script, no inline
    // style attribute (style-src 'self' would refuse a <style> element).
    let html = String::from_utf8(index).unwrap();
    for tag in html.split("<script").skip(1) {
        let open = tag.split('>').next().unwrap();
        assert!(
            open.contains(" src="),
            "inline script in index.html: <script{open}>"
        );
    }
    assert!(!html.contains(" style="), "style attribute in index.html");
    assert!(!html.contains("<style"), "<style> element in index.html");
    assert!(html.contains(r#"<link rel="manifest" href="manifest.webmanifest">"#));
}

#[tokio::test]
async fn index_revalidates_with_304_and_missing_files_are_404() {
    let www = browser_kit::bundle();
    let bridge = Bridge::start(Config {
        www,
        embedded_page: false,
        ..Config::default()
    })
    .await;
    let first = get(bridge.addr, "/", &[("accept-encoding", "br")]).await;
    let modified = first
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();
    let again = get(
        bridge.addr,
        "/",
        &[("accept-encoding", "br"), ("if-modified-since", &modified)],
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("cache-control"), Some("no-cache"));
    let missing = get(bridge.addr, "/nope-0123456789abcdef.js", &[]).await;
    assert_eq!(missing.status, 404);
    assert_security_headers(&missing, "404", &format!("ws://{}", bridge.addr));
}

#[tokio::test]
async fn security_headers_on_the_api_and_behind_a_trusted_proxy() {
    let bridge = Bridge::start(Config {
        www: browser_kit::bundle(),
        embedded_page: false,
        ..Config::default()
    })
    .await;
    let ws = format!("ws://{}", bridge.addr);
    for path in ["/api/servers", "/healthz", "/metrics"] {
        let r = get(bridge.addr, path, &[]).await;
        assert_eq!(r.status, 200, "{path}");
        assert_security_headers(&r, path, &ws);
    }
    let api = get(bridge.addr, "/api/servers", &[]).await;
    assert_eq!(api.header("cache-control"), Some("no-store"));
    // Forwarded headers from an untrusted peer change nothing.
    let forwarded = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "chat.example.org"),
    ];
    let r = get(bridge.addr, "/", &forwarded).await;
    assert_security_headers(&r, "untrusted forwarded", &ws);
    drop(bridge);

    let proxied = Bridge::start(Config {
        www: browser_kit::bundle(),
        embedded_page: false,
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..Config::default()
    })
    .await;
    let r = get(proxied.addr, "/", &forwarded).await;
    assert_security_headers(&r, "behind a TLS proxy", "wss://chat.example.org");
}

/// The page inside the binary (`cargo xtask test` builds this test with the
/// table of the page it just built): the same encodings, cache policy and
/// headers, and ETag revalidation.
#[cfg(feature = "embed-page")]
#[tokio::test]
async fn the_page_inside_the_binary_is_served_the_same_way() {
    let page = dumdum_bridge::assets::embedded().expect("a page inside");
    let bridge = Bridge::start(Config {
        embedded_page: true,
        ..Config::default()
    })
    .await;
    for asset in page {
        let has = (!asset.br.is_empty(), !asset.gzip.is_empty());
        if compressible(asset.path) && asset.raw.len() > 256 {
            assert_eq!(has, (true, true), "{} has both forms", asset.path);
        }
        let sizes = check_file(
            bridge.addr,
            &format!("/{}", asset.path),
            asset.path,
            asset.raw,
            has,
        )
        .await;
        println!(
            "embedded {:<34} {:>9} {:>9} {:>9}",
            asset.path, sizes.0, sizes.1, sizes.2
        );
    }
    let first = get(bridge.addr, "/", &[]).await;
    let tag = first
        .header("etag")
        .expect("an ETag on index.html")
        .to_owned();
    let again = get(bridge.addr, "/", &[("if-none-match", &tag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
}
