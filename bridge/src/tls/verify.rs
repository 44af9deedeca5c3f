//! How the bridge decides to trust an upstream's certificate, and how it
//! says why it did not.
//!
//! dumdum servers are usually set up as the reference README says, with
//! `openssl req -new -x509 -days 365 -nodes -out dumdum.crt -keyout
//! dumdum.key`: a self-signed certificate that is a CA (`CA:TRUE`), with no
//! subjectAltName and often no name at all. The reference client trusts it
//! by loading that file. The bridge does the same: a server certificate that
//! is byte for byte one of the certificates of the upstream's `ca` file, or
//! whose SHA-256 is one of its `fingerprint`s, is *pinned* — trusted as that
//! server whatever its CA flag, names or issuer, as long as it is within its
//! validity period (the handshake is still signed with its key). Any other
//! certificate is verified as usual: a chain to the system roots or to a CA
//! of the `ca` file, for the upstream's server name.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};

use super::der;

/// A SHA-256 certificate fingerprint, as `fingerprint = "sha256:AB:CD:…"`
/// pins it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(cert_der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, cert_der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Fingerprint(out)
    }
}

fn hex_pairs(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `AB:CD:…`, uppercase, 32 pairs: what `openssl x509 -fingerprint -sha256`
/// prints and the `secured` notice shows.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_pairs(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint(sha256:{self})")
    }
}

/// Why a `fingerprint` string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FingerprintError {
    /// Another hash than SHA-256 was named.
    #[error(
        "fingerprint {text:?}: only SHA-256 fingerprints can be pinned \
         (openssl x509 -in dumdum.crt -noout -fingerprint -sha256)"
    )]
    NotSha256 {
        /// What was written.
        text: String,
    },
    /// Something other than hex digits and colons.
    #[error("fingerprint {text:?}: {found:?} is not a hex digit")]
    NotHex {
        /// What was written.
        text: String,
        /// The first wrong character.
        found: char,
    },
    /// Too few or too many digits.
    #[error("fingerprint {text:?}: a SHA-256 fingerprint has 64 hex digits, this one has {digits}")]
    Length {
        /// What was written.
        text: String,
        /// How many hex digits it has.
        digits: usize,
    },
}

/// Accepts `sha256:AB:CD:…`, `AB:CD:…`, `abcd…` (either case, colons
/// optional) and the line openssl prints, `sha256 Fingerprint=AB:CD:…`.
impl FromStr for Fingerprint {
    type Err = FingerprintError;

    fn from_str(text: &str) -> Result<Self, FingerprintError> {
        let s = text.trim();
        let lower = s.to_ascii_lowercase();
        let hex = if let Some(at) = lower.find(" fingerprint=") {
            if &lower[..at] != "sha256" {
                return Err(FingerprintError::NotSha256 { text: text.into() });
            }
            &s[at + " fingerprint=".len()..]
        } else if let Some((algo, rest)) = s.split_once(':')
            && algo.len() > 2
        {
            // `sha256:…`; a first hex pair would be two characters long.
            if !algo.eq_ignore_ascii_case("sha256") && !algo.eq_ignore_ascii_case("sha-256") {
                return Err(FingerprintError::NotSha256 { text: text.into() });
            }
            rest
        } else {
            s
        };
        let mut digits = Vec::with_capacity(64);
        for c in hex.chars() {
            match c {
                ':' => {}
                c if c.is_ascii_hexdigit() => digits.push(c),
                found => {
                    return Err(FingerprintError::NotHex {
                        text: text.into(),
                        found,
                    });
                }
            }
        }
        if digits.len() != 64 {
            return Err(FingerprintError::Length {
                text: text.into(),
                digits: digits.len(),
            });
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(digits.chunks(2)) {
            let hi = pair[0].to_digit(16).unwrap_or(0);
            let lo = pair[1].to_digit(16).unwrap_or(0);
            *byte = u8::try_from(hi * 16 + lo).unwrap_or(0);
        }
        Ok(Fingerprint(out))
    }
}

/// What was wrong with an upstream's certificate, in words. The verifier
/// returns these inside `CertificateError::Other`; [`describe`] finds them.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CertProblem {
    /// Pins are configured, the certificate is none of them, and no trusted
    /// CA issued it.
    #[error("the certificate of {upstream} is not the pinned one (SHA-256 {presented})")]
    NotPinned {
        /// The upstream's name.
        upstream: String,
        /// The fingerprint of the certificate the server presented.
        presented: Fingerprint,
    },
    /// No pin, and the certificate does not chain to a trusted CA.
    #[error(
        "the certificate of {upstream} is not signed by a trusted CA \
         (pin it with ca = \"its .crt file\" or fingerprint)"
    )]
    UntrustedIssuer {
        /// The upstream's name.
        upstream: String,
    },
    /// No pin, and the certificate is a CA certificate (what the reference
    /// README's openssl command makes), which cannot serve as a chain's leaf.
    #[error(
        "the certificate of {upstream} is a self-made CA certificate: \
         pin it with ca = \"its .crt file\" or fingerprint"
    )]
    CaAsServer {
        /// The upstream's name.
        upstream: String,
    },
    /// The certificate chains to a trusted CA but names another server.
    #[error("the certificate of {upstream} is for {}, not {expected}", names(.presented))]
    WrongName {
        /// The upstream's name.
        upstream: String,
        /// The name the bridge checked (`server_name`, else the host).
        expected: String,
        /// The names in the certificate (subjectAltName, else its CN).
        presented: Vec<String>,
    },
    /// A pinned certificate past its notAfter.
    #[error("the certificate of {upstream} expired on {}", der::date(*.not_after))]
    Expired {
        /// The upstream's name.
        upstream: String,
        /// Unix seconds.
        not_after: i64,
    },
    /// A pinned certificate before its notBefore.
    #[error("the certificate of {upstream} is not valid before {}", der::date(*.not_before))]
    NotYetValid {
        /// The upstream's name.
        upstream: String,
        /// Unix seconds.
        not_before: i64,
    },
    /// A pinned certificate whose validity cannot be read.
    #[error("the certificate of {upstream} is malformed")]
    Malformed {
        /// The upstream's name.
        upstream: String,
    },
}

/// A name as rustls presents it (webpki's Debug form, `DnsName("a.example")`
/// or `IpAddress(127.0.0.1)`), without the wrapper.
fn plain_name(presented: &str) -> String {
    let inner = ["DnsName(", "IpAddress(", "UriName("]
        .iter()
        .find_map(|p| presented.strip_prefix(p)?.strip_suffix(')'));
    match inner {
        Some(inner) => inner.trim_matches('"').to_string(),
        None => presented.to_string(),
    }
}

/// `a`, `a or b`, `a, b or c`; `no name at all` for none.
fn names(list: &[String]) -> String {
    match list {
        [] => "no name at all".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

impl From<CertProblem> for rustls::Error {
    fn from(p: CertProblem) -> Self {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(p))))
    }
}

/// The verifier of one upstream: pins first, then the usual verification.
#[derive(Debug)]
pub(crate) struct PinningVerifier {
    upstream: String,
    /// Every certificate of the `ca` file.
    pinned_certs: Vec<CertificateDer<'static>>,
    pinned_fingerprints: Vec<Fingerprint>,
    /// System roots plus the `ca` file; `None` when there are no roots at all.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl PinningVerifier {
    pub(crate) fn new(
        upstream: &str,
        pinned_certs: Vec<CertificateDer<'static>>,
        pinned_fingerprints: Vec<Fingerprint>,
        roots: rustls::RootCertStore,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, rustls::client::VerifierBuilderError> {
        let webpki = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()?,
            )
        };
        Ok(PinningVerifier {
            upstream: upstream.to_string(),
            pinned_certs,
            pinned_fingerprints,
            webpki,
            provider,
        })
    }

    fn has_pins(&self) -> bool {
        !self.pinned_certs.is_empty() || !self.pinned_fingerprints.is_empty()
    }

    fn is_pinned(&self, cert: &CertificateDer<'_>) -> bool {
        self.pinned_certs
            .iter()
            .any(|p| p.as_ref() == cert.as_ref())
            || (!self.pinned_fingerprints.is_empty()
                && self.pinned_fingerprints.contains(&Fingerprint::of(cert)))
    }

    /// A pinned certificate is trusted within its validity period.
    fn check_pinned(
        &self,
        cert: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let upstream = self.upstream.clone();
        let Some((not_before, not_after)) = der::validity(cert) else {
            return Err(CertProblem::Malformed { upstream }.into());
        };
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now > not_after {
            return Err(CertProblem::Expired {
                upstream,
                not_after,
            }
            .into());
        }
        if now < not_before {
            return Err(CertProblem::NotYetValid {
                upstream,
                not_before,
            }
            .into());
        }
        Ok(ServerCertVerified::assertion())
    }

    /// Rewords what the usual verification said, with what only the
    /// certificate and the pins tell.
    fn explain(&self, error: rustls::Error, cert: &[u8]) -> rustls::Error {
        let upstream = self.upstream.clone();
        let rustls::Error::InvalidCertificate(e) = error else {
            return error;
        };
        let is_ca = der::is_ca(cert) == Some(true);
        // The chain did not reach a trusted CA (a self-signed CA certificate
        // used as a server's fails that way too, with CaUsedAsEndEntity).
        let untrusted = matches!(e, CertificateError::UnknownIssuer)
            || (is_ca && matches!(e, CertificateError::Other(_)));
        if untrusted && self.has_pins() {
            return CertProblem::NotPinned {
                upstream,
                presented: Fingerprint::of(cert),
            }
            .into();
        }
        match e {
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => {
                let mut presented = der::subject_alt_names(cert)
                    .unwrap_or_else(|| presented.iter().map(|n| plain_name(n)).collect());
                if presented.is_empty() {
                    // webpki reads subjectAltName only; say what the CN claims.
                    presented = der::common_names(cert);
                }
                CertProblem::WrongName {
                    upstream,
                    expected: expected.to_str().into_owned(),
                    presented,
                }
                .into()
            }
            CertificateError::UnknownIssuer => CertProblem::UntrustedIssuer { upstream }.into(),
            CertificateError::Other(_) if is_ca => CertProblem::CaAsServer { upstream }.into(),
            other => rustls::Error::InvalidCertificate(other),
        }
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.is_pinned(end_entity) {
            return self.check_pinned(end_entity, now);
        }
        let Some(webpki) = &self.webpki else {
            return Err(self.explain(CertificateError::UnknownIssuer.into(), end_entity.as_ref()));
        };
        webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| self.explain(e, end_entity.as_ref()))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `HandshakeFailure` → `handshake failure`: the leading identifier of a
/// name rustls only gives as Rust (a variant's fields are left out).
fn words(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 8);
    let mut prev_lower = false;
    for c in ident.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push(' ');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_lower = true;
        } else {
            break;
        }
    }
    out
}

fn debug_words(value: &impl fmt::Debug) -> String {
    words(&format!("{value:?}"))
}

/// An error's text: kept when it is already words, converted when it is a
/// bare identifier (webpki displays its errors as `CaUsedAsEndEntity`).
fn display_words(text: &str) -> String {
    if text.chars().all(|c| c.is_ascii_alphanumeric()) {
        words(text)
    } else {
        text.to_string()
    }
}

/// Unix seconds of a rustls time.
fn secs(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

/// Why TLS with `upstream` failed, in one sentence for people: the 4003
/// close reason (clipped), the `upstream error` notice and the log.
pub fn describe(upstream: &str, error: &rustls::Error) -> String {
    use rustls::Error as E;
    let cert = |what: &str| format!("the certificate of {upstream} {what}");
    match error {
        E::InvalidCertificate(e) => match e {
            CertificateError::Other(OtherError(inner)) => {
                match inner.downcast_ref::<CertProblem>() {
                    Some(p) => p.to_string(),
                    None => cert(&format!(
                        "was refused ({})",
                        display_words(&inner.to_string())
                    )),
                }
            }
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => CertProblem::WrongName {
                upstream: upstream.into(),
                expected: expected.to_str().into_owned(),
                presented: presented.iter().map(|n| plain_name(n)).collect(),
            }
            .to_string(),
            CertificateError::NotValidForName => cert("is not for this server name"),
            CertificateError::ExpiredContext { not_after, .. } => CertProblem::Expired {
                upstream: upstream.into(),
                not_after: secs(*not_after),
            }
            .to_string(),
            CertificateError::Expired => cert("has expired"),
            CertificateError::NotValidYetContext { not_before, .. } => CertProblem::NotYetValid {
                upstream: upstream.into(),
                not_before: secs(*not_before),
            }
            .to_string(),
            CertificateError::NotValidYet => cert("is not valid yet"),
            CertificateError::UnknownIssuer => CertProblem::UntrustedIssuer {
                upstream: upstream.into(),
            }
            .to_string(),
            CertificateError::BadSignature => cert("has a bad signature"),
            CertificateError::BadEncoding => cert("is malformed"),
            CertificateError::Revoked => cert("is revoked"),
            CertificateError::UnhandledCriticalExtension => {
                cert("has a critical extension the bridge does not know")
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                cert("is not meant for TLS servers (extended key usage)")
            }
            CertificateError::UnsupportedSignatureAlgorithmContext { .. }
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                cert("is signed with an algorithm the bridge does not support")
            }
            other => cert(&format!("was refused ({})", debug_words(other))),
        },
        E::NoCertificatesPresented => format!("{upstream} presented no certificate"),
        E::AlertReceived(alert) => format!(
            "{upstream} refused the TLS handshake (alert: {})",
            debug_words(alert)
        ),
        E::PeerIncompatible(why) => format!(
            "{upstream} and the bridge have no TLS version or cipher in common ({})",
            debug_words(why)
        ),
        E::PeerMisbehaved(why) => {
            format!("{upstream} broke the TLS protocol ({})", debug_words(why))
        }
        E::InvalidMessage(why) => {
            format!(
                "{upstream} sent a malformed TLS message ({})",
                debug_words(why)
            )
        }
        E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            format!("{upstream} sent an unexpected TLS message")
        }
        E::DecryptError => format!("TLS with {upstream} failed: a record did not decrypt"),
        E::General(text) => format!("TLS with {upstream} failed: {text}"),
        other => format!("TLS with {upstream} failed ({})", debug_words(other)),
    }
}

/// [`describe`] for what a TLS handshake over a socket returns.
pub fn describe_io(upstream: &str, error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    if let Some(e) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return describe(upstream, e);
    }
    match error.kind() {
        ErrorKind::UnexpectedEof => {
            format!("{upstream} closed the connection during the TLS handshake")
        }
        ErrorKind::ConnectionReset => {
            format!("{upstream} reset the connection during the TLS handshake")
        }
        _ => format!("TLS with {upstream} failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HEX: &str = "7F0E5B9450EEC5129580E573A741DA53CEAC68DD920D8C6B751971483ADF1CCB";

    fn colons(hex: &str) -> String {
        hex.as_bytes()
            .chunks(2)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }

    #[test]
    fn fingerprints_in_every_usual_spelling() {
        let expected: Fingerprint = HEX.parse().unwrap();
        assert_eq!(expected.0[0], 0x7f);
        assert_eq!(expected.0[31], 0xcb);
        let with_colons = colons(HEX);
        for text in [
            with_colons.clone(),
            with_colons.to_lowercase(),
            HEX.to_lowercase(),
            format!("sha256:{with_colons}"),
            format!("SHA256:{HEX}"),
            format!("sha-256:{with_colons}"),
            format!("  sha256:{}  ", HEX.to_lowercase()),
            format!("sha256 Fingerprint={with_colons}"),
            format!("SHA256 Fingerprint={with_colons}"),
        ] {
            assert_eq!(text.parse::<Fingerprint>(), Ok(expected), "{text}");
        }
        assert_eq!(expected.to_string(), with_colons);
        assert_eq!(
            Fingerprint::of(b"x").to_string(),
            super::super::fingerprint(b"x")
        );
    }

    #[test]
    fn bad_fingerprints_are_refused_in_words() {
        let short = &HEX[..62];
        let e = short.parse::<Fingerprint>().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "fingerprint {short:?}: a SHA-256 fingerprint has 64 hex digits, this one has 62"
            )
        );
        let e = format!("{HEX}00").parse::<Fingerprint>().unwrap_err();
        assert!(e.to_string().contains("this one has 66"), "{e}");
        let e = format!("{}zz", &HEX[..62])
            .parse::<Fingerprint>()
            .unwrap_err();
        assert!(e.to_string().contains("'z' is not a hex digit"), "{e}");
        let e = format!("sha1:{}", &HEX[..40])
            .parse::<Fingerprint>()
            .unwrap_err();
        assert!(e.to_string().contains("only SHA-256"), "{e}");
        let e = format!("sha1 Fingerprint={}", colons(&HEX[..40]))
            .parse::<Fingerprint>()
            .unwrap_err();
        assert!(matches!(e, FingerprintError::NotSha256 { .. }), "{e}");
        assert!("".parse::<Fingerprint>().is_err());
        assert!("AB CD".parse::<Fingerprint>().is_err());
    }

    fn other(p: CertProblem) -> rustls::Error {
        p.into()
    }

    #[test]
    fn certificate_problems_in_words() {
        let fp: Fingerprint = HEX.parse().unwrap();
        let home = || "home".to_string();
        let cases = [
            (
                other(CertProblem::NotPinned {
                    upstream: home(),
                    presented: fp,
                }),
                "the certificate of home is not the pinned one (SHA-256 7F:0E:5B:94:50:EE:C5:12:95:80:\
                 E5:73:A7:41:DA:53:CE:AC:68:DD:92:0D:8C:6B:75:19:71:48:3A:DF:1C:CB)",
            ),
            (
                other(CertProblem::Expired {
                    upstream: home(),
                    not_after: 1_777_593_600,
                }),
                "the certificate of home expired on 2026-05-01",
            ),
            (
                other(CertProblem::NotYetValid {
                    upstream: home(),
                    not_before: 1_777_593_600 + 3600,
                }),
                "the certificate of home is not valid before 2026-05-01",
            ),
            (
                other(CertProblem::WrongName {
                    upstream: home(),
                    expected: "127.0.0.1".into(),
                    presented: vec!["chat.example.org".into()],
                }),
                "the certificate of home is for chat.example.org, not 127.0.0.1",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                    expected: ServerName::try_from("127.0.0.1").unwrap(),
                    // As rustls 0.23 gives them: webpki's Debug form.
                    presented: vec![
                        "DnsName(\"a.example\")".into(),
                        "b.example".into(),
                        "IpAddress(10.0.0.1)".into(),
                    ],
                }),
                "the certificate of home is for a.example, b.example or 10.0.0.1, not 127.0.0.1",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
                    time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000)),
                    not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                        1_777_593_600,
                    )),
                }),
                "the certificate of home expired on 2026-05-01",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "the certificate of home is not signed by a trusted CA \
                 (pin it with ca = \"its .crt file\" or fingerprint)",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::BadSignature),
                "the certificate of home has a bad signature",
            ),
            (
                rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
                "home refused the TLS handshake (alert: handshake failure)",
            ),
            (
                rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate),
                "home refused the TLS handshake (alert: bad certificate)",
            ),
            (
                rustls::Error::NoCertificatesPresented,
                "home presented no certificate",
            ),
        ];
        for (error, words) in cases {
            assert_eq!(describe("home", &error), words, "{error:?}");
            assert!(!describe("home", &error).contains("Context"));
        }
    }

    #[test]
    fn webpki_errors_are_never_shown_as_identifiers() {
        // What rustls gives for webpki errors it has no variant for.
        #[derive(Debug)]
        struct CaUsedAsEndEntity;
        impl fmt::Display for CaUsedAsEndEntity {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("CaUsedAsEndEntity")
            }
        }
        impl std::error::Error for CaUsedAsEndEntity {}
        let e = rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
            CaUsedAsEndEntity,
        ))));
        assert_eq!(
            describe("home", &e),
            "the certificate of home was refused (ca used as end entity)"
        );
        let e = rustls::Error::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon);
        assert_eq!(
            describe("home", &e),
            "home and the bridge have no TLS version or cipher in common (no cipher suites in common)"
        );
    }

    #[test]
    fn io_errors_find_the_tls_error_inside() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert!(describe_io("home", &io).contains("not signed by a trusted CA"));
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(
            describe_io("home", &eof),
            "home closed the connection during the TLS handshake"
        );
    }

    #[test]
    fn presented_names_lose_their_wrappers() {
        assert_eq!(
            plain_name("DnsName(\"chat.example.org\")"),
            "chat.example.org"
        );
        assert_eq!(plain_name("IpAddress(::1)"), "::1");
        assert_eq!(plain_name("chat.example.org"), "chat.example.org");
    }

    #[test]
    fn names_are_listed_in_words() {
        assert_eq!(names(&[]), "no name at all");
        assert_eq!(names(&["a".into()]), "a");
        assert_eq!(names(&["a".into(), "b".into()]), "a or b");
    }

    #[test]
    fn words_of_identifiers() {
        assert_eq!(words("HandshakeFailure"), "handshake failure");
        assert_eq!(words("Other(OtherError(x))"), "other");
        assert_eq!(words("Tls12NotOffered"), "tls12 not offered");
        assert_eq!(display_words("CaUsedAsEndEntity"), "ca used as end entity");
        assert_eq!(display_words("some text, already"), "some text, already");
    }
}
