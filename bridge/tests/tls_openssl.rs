//! TLS to dumdum servers set up the way operators really set them up: every
//! certificate here is made by the `openssl` command line (the reference
//! README's own command first), served by the real Python `dumdum-server
//! --cert crt:key`, and reached through the bridge. A pinned certificate
//! (the `ca` file, as the reference client trusts the `.crt` it is given, or
//! a `fingerprint`) is the server's identity whatever its CA flag or names;
//! every refusal says why in words.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Bridge, WAIT, WsClient, expect_secured, off_thread};
use dumdum_bridge::tls::Fingerprint;
use dumdum_bridge::{Config, FileConfig, UpstreamConfig};
use dumdum_protocol::ClientMessage;
use dumdum_protocol::session::Notice;
use dumdum_testkit::{DumdumServer, PyPeer, TestCert, free_port};

/// Makes a certificate with openssl and starts the real server with it.
async fn serve(make: impl FnOnce() -> TestCert + Send + 'static) -> (DumdumServer, TestCert) {
    off_thread(move || {
        let cert = make();
        let server = DumdumServer::start_with(&["general", "random"], Some(&cert));
        (server, cert)
    })
    .await
}

/// The upstream `home` at `server`, refusing it without TLS.
fn home(server: &DumdumServer) -> UpstreamConfig {
    UpstreamConfig {
        require_tls: true,
        ..UpstreamConfig::new("home", server.addr().to_string())
    }
}

fn bridge_to(up: UpstreamConfig) -> Config {
    Config {
        upstreams: vec![up],
        ..Config::default()
    }
}

/// Logs in as `nick`, posts and receives its own message; returns the
/// `secured` notice's (peer, fingerprint).
async fn chat(bridge: &Bridge, nick: &str) -> (WsClient, String, String) {
    let mut a = bridge.session(None).await;
    a.login_eager(nick).await;
    let text = format!("hello from {nick}");
    a.say("general", &text).await;
    assert_eq!(a.expect_message(&text).await.nick, nick);
    let (_, peer, fingerprint) = expect_secured(&mut a).await;
    (a, peer, fingerprint)
}

/// A session that must be refused: returns (close reason, error notice).
async fn refused(bridge: &Bridge) -> (String, String) {
    let mut a = bridge.session(None).await;
    a.send(&ClientMessage::Hello { version: 2 }).await;
    a.send(&ClientMessage::Authenticate {
        nick: "refused".into(),
    })
    .await;
    let (code, reason) = a.expect_close().await;
    assert_eq!(code, 4003, "{reason}");
    assert!(
        reason.len() <= 123,
        "a close reason fits 123 bytes: {reason}"
    );
    let notice = a
        .notices
        .iter()
        .find_map(|n| match n {
            Notice::UpstreamError { reason } => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("an upstream error notice; got {:?}", a.notices));
    for text in [&reason, &notice] {
        for debug in [
            "Context",
            "Error(",
            "{",
            "InvalidCertificate",
            "UnknownIssuer",
        ] {
            assert!(!text.contains(debug), "words, not a Debug dump: {text}");
        }
    }
    (reason, notice)
}

/// `date -u -d @SECS +%F`: the date in words, from outside the bridge.
fn date_of(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%F"])
        .output()
        .expect("date(1)");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn readme_certificate_pinned_by_its_file_chats_with_the_reference_client() {
    let (server, cert) = serve(TestCert::openssl_readme).await;
    let text = cert.openssl_text();
    assert!(text.contains("CA:TRUE"), "OpenSSL 3 makes a CA: {text}");
    assert!(!text.contains("Subject Alternative Name"), "{text}");
    assert!(!text.contains("CN ="), "no name at all: {text}");

    // ca = "dumdum.crt", no server_name: the address is 127.0.0.1.
    let bridge = Bridge::start(bridge_to(UpstreamConfig {
        ca: Some(cert.cert_path.clone()),
        ..home(&server)
    }))
    .await;
    let (mut a, peer, fingerprint) = chat(&bridge, "ann").await;
    assert_eq!(
        fingerprint,
        cert.openssl_fingerprint(),
        "as openssl prints it"
    );
    assert_eq!(peer, "C=AU, ST=Some-State, O=Internet Widgits Pty Ltd");

    // The reference client trusts the same file its own way.
    let (addr, ca) = (server.addr(), cert.cert_path.clone());
    let py = off_thread(move || {
        let mut py = PyPeer::connect(addr, "pete", Some(&ca));
        py.expect(WAIT, "hello", |v| v["ev"] == "hello" && v["tls"] == true);
        assert!(py.expect_auth(), "the reference client over TLS");
        py.send("general", "from the reference client");
        py
    })
    .await;
    assert_eq!(
        a.expect_message("from the reference client").await.nick,
        "pete"
    );
    a.say("general", "from the browser").await;
    let py = off_thread(move || {
        let mut py = py;
        let m = py.expect_message("from the browser");
        assert_eq!(m["nick"], "ann");
        py
    })
    .await;
    drop(py);
}

#[tokio::test]
async fn every_usual_openssl_certificate_pinned_by_its_file_works() {
    let shapes: [(&str, &[&str]); 4] = [
        ("empty subject (-subj /)", &["-subj", "/"]),
        (
            "CN and subjectAltName, CA:TRUE",
            &[
                "-subj",
                "/CN=chat.example.org",
                "-addext",
                "subjectAltName=DNS:chat.example.org,IP:10.9.8.7",
            ],
        ),
        (
            "CN and subjectAltName, CA:FALSE",
            &[
                "-subj",
                "/CN=chat.example.org",
                "-addext",
                "subjectAltName=DNS:chat.example.org",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
            ],
        ),
        (
            "CN only, CA:FALSE",
            &[
                "-subj",
                "/CN=chat.example.org",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
            ],
        ),
    ];
    for (i, (shape, args)) in shapes.into_iter().enumerate() {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (server, cert) = serve(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            TestCert::openssl_req(&args)
        })
        .await;
        let text = cert.openssl_text();
        let ca_false = shape.contains("CA:FALSE");
        assert_eq!(text.contains("CA:FALSE"), ca_false, "{shape}: {text}");
        // Pinned: the names (chat.example.org) do not have to match the
        // address the bridge dials (127.0.0.1).
        let bridge = Bridge::start(bridge_to(UpstreamConfig {
            ca: Some(cert.cert_path.clone()),
            ..home(&server)
        }))
        .await;
        let (_a, _, fingerprint) = chat(&bridge, &format!("user{i}")).await;
        assert_eq!(fingerprint, cert.openssl_fingerprint(), "{shape}");
    }
}

#[tokio::test]
async fn a_fingerprint_pins_without_any_file() {
    let (server, cert) = serve(|| TestCert::openssl_req(&["-subj", "/"])).await;
    let printed = cert.openssl_fingerprint();
    // The TOML an operator writes, with the value openssl printed, and the
    // same value in lowercase without colons.
    let toml = format!(
        "[[upstream]]\nname = \"home\"\naddress = \"{}\"\nrequire_tls = true\n\
         fingerprint = [\"sha256:{printed}\", \"{}\"]\n",
        server.addr(),
        printed.replace(':', "").to_lowercase()
    );
    let up = FileConfig::parse(&toml).unwrap().upstream.remove(0);
    assert_eq!(up.fingerprint.len(), 2);
    assert_eq!(up.ca, None);
    let bridge = Bridge::start(bridge_to(up)).await;
    let (_a, peer, fingerprint) = chat(&bridge, "fin").await;
    assert_eq!(fingerprint, printed);
    assert_eq!(peer, "", "the empty subject of -subj /");
}

#[tokio::test]
async fn another_certificate_than_the_pinned_one_is_refused_in_words() {
    let pinned = off_thread(TestCert::openssl_readme).await;
    let (server, presented) = serve(TestCert::openssl_readme).await;
    let expected = format!(
        "the certificate of home is not the pinned one (SHA-256 {})",
        presented.openssl_fingerprint()
    );

    // Pinned by file.
    let bridge = Bridge::start(bridge_to(UpstreamConfig {
        ca: Some(pinned.cert_path.clone()),
        ..home(&server)
    }))
    .await;
    let (reason, notice) = refused(&bridge).await;
    assert_eq!(notice, expected, "the notice has the whole text");
    assert!(
        reason.starts_with("the certificate of home is not the pinned one (SHA-256 "),
        "{reason}"
    );
    assert!(
        expected.starts_with(reason.trim_end_matches("...")),
        "{reason}"
    );

    // Pinned by fingerprint.
    let fp: Fingerprint = pinned.openssl_fingerprint().parse().unwrap();
    let bridge = Bridge::start(bridge_to(UpstreamConfig {
        fingerprint: vec![fp],
        ..home(&server)
    }))
    .await;
    let (_, notice) = refused(&bridge).await;
    assert_eq!(notice, expected);
}

#[tokio::test]
async fn an_unpinned_readme_certificate_says_how_to_pin_it() {
    // The original report: without the file, the bridge cannot trust a
    // self-made CA certificate, and says what to do.
    let (server, _cert) = serve(TestCert::openssl_readme).await;
    let bridge = Bridge::start(bridge_to(home(&server))).await;
    let (reason, notice) = refused(&bridge).await;
    assert_eq!(
        notice,
        "the certificate of home is a self-made CA certificate: \
         pin it with ca = \"its .crt file\" or fingerprint"
    );
    assert_eq!(reason, notice, "short enough to be the close reason whole");
}

#[tokio::test]
async fn an_expired_pinned_certificate_is_refused_with_its_date() {
    let now = SystemTime::now();
    let not_after = now - 30 * DAY;
    let (server, cert) =
        serve(move || TestCert::openssl_dated("/CN=localhost", now - 400 * DAY, not_after)).await;
    assert!(cert.openssl_text().contains("CA:TRUE"));
    let bridge = Bridge::start(bridge_to(UpstreamConfig {
        ca: Some(cert.cert_path.clone()),
        ..home(&server)
    }))
    .await;
    let (reason, notice) = refused(&bridge).await;
    let expected = format!("the certificate of home expired on {}", date_of(not_after));
    assert_eq!(reason, expected);
    assert_eq!(notice, expected);

    // Not valid yet: the same, the other way round.
    let not_before = now + 30 * DAY;
    let (server, cert) =
        serve(move || TestCert::openssl_dated("/CN=localhost", not_before, now + 400 * DAY)).await;
    let fp: Fingerprint = cert.openssl_fingerprint().parse().unwrap();
    let bridge = Bridge::start(bridge_to(UpstreamConfig {
        fingerprint: vec![fp],
        ..home(&server)
    }))
    .await;
    let (reason, _) = refused(&bridge).await;
    assert_eq!(
        reason,
        format!(
            "the certificate of home is not valid before {}",
            date_of(not_before)
        )
    );
}

#[tokio::test]
async fn a_ca_and_its_leaf_are_verified_by_name() {
    let (server, ca, leaf) = off_thread(|| {
        let ca = TestCert::openssl_ca("/CN=dumdum test CA");
        let leaf = ca.openssl_issue("/CN=localhost", "DNS:localhost,IP:127.0.0.1");
        let server = DumdumServer::start_with(&["general"], Some(&leaf));
        (server, ca, leaf)
    })
    .await;
    assert!(leaf.openssl_text().contains("CA:FALSE"));
    let with_name = |name: Option<&str>| UpstreamConfig {
        ca: Some(ca.cert_path.clone()),
        server_name: name.map(Into::into),
        ..home(&server)
    };

    // The right name, given or taken from the address (an IP SAN).
    for (nick, name) in [("named", Some("localhost")), ("by-address", None)] {
        let bridge = Bridge::start(bridge_to(with_name(name))).await;
        let (_a, peer, fingerprint) = chat(&bridge, nick).await;
        assert_eq!(peer, "CN=localhost");
        assert_eq!(
            fingerprint,
            leaf.openssl_fingerprint(),
            "the leaf, not the CA"
        );
    }

    // A wrong name: both names, in words.
    let bridge = Bridge::start(bridge_to(with_name(Some("chat.example.org")))).await;
    let (reason, notice) = refused(&bridge).await;
    assert_eq!(
        notice,
        "the certificate of home is for localhost or 127.0.0.1, not chat.example.org"
    );
    assert_eq!(reason, notice);
}

#[tokio::test]
async fn a_leaf_named_only_by_its_cn_names_it_when_the_name_is_wrong() {
    let (server, ca) = off_thread(|| {
        let ca = TestCert::openssl_ca("/CN=dumdum test CA");
        let leaf = ca.openssl_issue("/CN=chat.example.org", "");
        assert!(!leaf.openssl_text().contains("Subject Alternative Name"));
        let server = DumdumServer::start_with(&["general"], Some(&leaf));
        (server, ca)
    })
    .await;
    // server_name defaults to the address, 127.0.0.1.
    let bridge = Bridge::start(bridge_to(UpstreamConfig {
        ca: Some(ca.cert_path.clone()),
        ..home(&server)
    }))
    .await;
    let (reason, _) = refused(&bridge).await;
    assert_eq!(
        reason,
        "the certificate of home is for chat.example.org, not 127.0.0.1"
    );
}

#[tokio::test]
async fn embedded_listen_with_a_readme_certificate_serves_the_reference_client() {
    let cert = off_thread(TestCert::openssl_readme).await;
    let port = free_port();
    let embedded = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let bridge = Bridge::start(Config {
        embedded_listen: Some(embedded),
        tls_cert: Some(cert.cert_path.clone()),
        tls_key: Some(cert.key_path.clone()),
        ..Config::default()
    })
    .await;

    // The reference client, trusting dumdum.crt its own way.
    let ca = cert.cert_path.clone();
    let py = off_thread(move || {
        let mut py = PyPeer::connect(embedded, "pyref", Some(&ca));
        py.expect(WAIT, "hello", |v| v["ev"] == "hello" && v["tls"] == true);
        assert!(py.expect_auth(), "the reference client over TLS");
        py
    })
    .await;

    // A second bridge pins the same file to reach the first one's embedded
    // server: a browser there and the reference client share a room.
    let front = Bridge::start(bridge_to(UpstreamConfig {
        ca: Some(cert.cert_path.clone()),
        require_tls: true,
        ..UpstreamConfig::new("home", embedded.to_string())
    }))
    .await;
    let (mut a, _, fingerprint) = chat(&front, "browser").await;
    assert_eq!(fingerprint, cert.openssl_fingerprint());
    let py = off_thread(move || {
        let mut py = py;
        assert_eq!(py.expect_message("hello from browser")["nick"], "browser");
        py.send("general", "hello from the reference client");
        py
    })
    .await;
    assert_eq!(
        a.expect_message("hello from the reference client")
            .await
            .nick,
        "pyref"
    );
    drop(py);
    drop(bridge);
}

#[test]
fn openssl_and_the_bridge_agree_on_the_readme_certificate() {
    let cert = TestCert::openssl_readme();
    assert!(Path::new(&cert.cert_path).ends_with("dumdum.crt"));
    assert!(Path::new(&cert.key_path).ends_with("dumdum.key"));
    assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        dumdum_bridge::tls::fingerprint(&cert.cert_der),
        cert.openssl_fingerprint()
    );
}
