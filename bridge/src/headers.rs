//! How the page is served: its cache policy per file and the security
//! headers every response carries (Content-Security-Policy, nosniff,
//! Referrer-Policy). The `--www` directory and the page inside the binary
//! follow the same rules.

/// Files whose name carries their content's hash never change.
pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Files that change in place under one name (`index.html`, the service
/// worker, the manifest): revalidated at every use (`Last-Modified` or
/// `ETag`, so usually a 304).
pub const CACHE_REVALIDATE: &str = "no-cache";
/// Other files of the page (icons): an hour, then revalidated.
pub const CACHE_SHORT: &str = "public, max-age=3600";

/// The length of the hex content hash `cargo xtask dist` puts in names.
const HASH_HEX_DIGITS: usize = 16;

/// Whether a web-root file name carries a content hash, as `cargo xtask
/// dist` names them: `<stem>-<16 hex digits>` then `_bg.wasm` or `.<ext>`
/// (`dumdum-0123456789abcdef_bg.wasm`, `styles-0123456789abcdef.css`).
pub fn is_hashed(name: &str) -> bool {
    let Some((stem, _ext)) = name.split_once('.') else {
        return false;
    };
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    let Some((base, hash)) = stem.rsplit_once('-') else {
        return false;
    };
    !base.is_empty()
        && hash.len() == HASH_HEX_DIGITS
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The `Cache-Control` of the page file at `path` (a request path; `/` or
/// a directory is its `index.html`).
pub fn cache_control(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or("");
    if name.is_empty() || name == "index.html" || name == "sw.js" || name.ends_with(".webmanifest")
    {
        CACHE_REVALIDATE
    } else if is_hashed(name) {
        CACHE_IMMUTABLE
    } else {
        CACHE_SHORT
    }
}

/// Whether the file at `path` is sent compressed when the client accepts
/// it (the kinds `cargo xtask dist` writes `.br` and `.gz` copies of), so
/// its responses vary by `Accept-Encoding`.
pub fn compressible(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or("");
    if name.is_empty() {
        return true; // index.html
    }
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    matches!(
        ext.to_ascii_lowercase().as_str(),
        "html" | "js" | "mjs" | "css" | "wasm" | "svg" | "json" | "webmanifest" | "txt"
    )
}

/// The WebSocket origin (`ws://host` or `wss://host`) of an HTTP(S) origin.
pub fn ws_origin(http_origin: &str) -> Option<String> {
    if let Some(host) = http_origin.strip_prefix("https://") {
        Some(format!("wss://{host}"))
    } else {
        http_origin
            .strip_prefix("http://")
            .map(|host| format!("ws://{host}"))
    }
}

/// The Content-Security-Policy of the bridge's responses. `own` is the
/// bridge's own origin as the browser sees it (see
/// [`crate::http::own_origin`]): the page's WebSocket goes there.
///
/// What the page needs, and no more:
/// - scripts from this origin only (its JS glue and boot script; no inline
///   script), and `'wasm-unsafe-eval'` to compile its WebAssembly;
/// - styles from this origin (`styles-<hash>.css`); **style attributes**
///   are allowed (`style-src-attr 'unsafe-inline'`): the page colours each
///   nick with `style="--hue: N"` set by Yew. An attribute cannot run code
///   or load from another origin (`img-src`/`font-src` stay `'self'`), and
///   Yew escapes every text it renders, so nothing from a message can
///   reach an attribute;
/// - images from this origin and `data:` URLs (a favicon drawn at run
///   time); fonts, the manifest and the service worker from this origin;
/// - `connect-src`: this origin and its WebSocket origin (`ws://` or
///   `wss://` matching how the page was served);
/// - nothing may frame the page, no plugins, no `<base>`, forms post only
///   here.
pub fn content_security_policy(own: Option<&str>) -> String {
    let ws = own.and_then(ws_origin);
    let connect = match &ws {
        Some(ws) => format!("'self' {ws}"),
        None => "'self'".to_owned(),
    };
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
         style-src 'self'; style-src-attr 'unsafe-inline'; \
         img-src 'self' data:; media-src 'self' data:; font-src 'self'; \
         connect-src {connect}; manifest-src 'self'; worker-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// `X-Content-Type-Options` of every response.
pub const NOSNIFF: &str = "nosniff";
/// `Referrer-Policy` of every response: the page links to other sites
/// (links in messages); they learn nothing of the chat's address.
pub const REFERRER_POLICY: &str = "no-referrer";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_are_the_ones_dist_writes() {
        for yes in [
            "dumdum-0123456789abcdef_bg.wasm",
            "dumdum-0123456789abcdef.js",
            "styles-fedcba9876543210.css",
            "boot-0123456789abcdef.js",
        ] {
            assert!(is_hashed(yes), "{yes}");
            assert_eq!(cache_control(&format!("/{yes}")), CACHE_IMMUTABLE);
        }
        for no in [
            "index.html",
            "sw.js",
            "icon.svg",
            "dumdum.js",
            "dumdum-0123456789ABCDEF.js",
            "dumdum-0123456789abcde.js",
            "-0123456789abcdef.js",
            "0123456789abcdef",
            "dumdum-0123456789abcdefg.js",
        ] {
            assert!(!is_hashed(no), "{no}");
        }
    }

    #[test]
    fn cache_policy_per_file_class() {
        for path in ["/", "/index.html", "/sw.js", "/manifest.webmanifest"] {
            assert_eq!(cache_control(path), CACHE_REVALIDATE, "{path}");
        }
        for path in ["/icon.svg", "/icon-192.png"] {
            assert_eq!(cache_control(path), CACHE_SHORT, "{path}");
        }
    }

    #[test]
    fn compressible_kinds() {
        for yes in [
            "/",
            "/index.html",
            "/a.js",
            "/a_bg.wasm",
            "/m.webmanifest",
            "/i.SVG",
        ] {
            assert!(compressible(yes), "{yes}");
        }
        for no in ["/icon-192.png", "/x", "/a.br"] {
            assert!(!compressible(no), "{no}");
        }
    }

    #[test]
    fn csp_allows_the_pages_own_websocket() {
        let csp = content_security_policy(Some("https://chat.example.org"));
        assert!(
            csp.contains("connect-src 'self' wss://chat.example.org;"),
            "{csp}"
        );
        assert!(csp.contains("script-src 'self' 'wasm-unsafe-eval';"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("script-src 'self' 'unsafe-inline'"));
        let csp = content_security_policy(Some("http://127.0.0.1:8080"));
        assert!(
            csp.contains("connect-src 'self' ws://127.0.0.1:8080;"),
            "{csp}"
        );
        let csp = content_security_policy(None);
        assert!(csp.contains("connect-src 'self';"), "{csp}");
        assert_eq!(ws_origin("gopher://x"), None);
    }
}
