//! Just enough DER to read what the bridge reports and checks about a
//! certificate: its subject and common name, its validity period, whether
//! it says it is a CA, and dates in words. Every function returns `None` on
//! malformed input rather than guessing.

use dumdum_protocol::calendar::{civil_from_days, days_from_civil};
use std::fmt::Write as _;

/// One DER TLV: (tag, contents, rest).
pub(crate) fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The parts of a TBSCertificate the bridge reads.
struct Tbs<'a> {
    validity: &'a [u8],
    subject: &'a [u8],
    /// The contents of `[3] EXPLICIT Extensions`, when present.
    extensions: Option<&'a [u8]>,
}

fn tbs(cert: &[u8]) -> Option<Tbs<'_>> {
    let (_, cert, _) = der(cert)?; // Certificate
    let (_, tbs, _) = der(cert)?; // TBSCertificate
    let mut rest = tbs;
    let (tag, _, r) = der(rest)?;
    if tag == 0xa0 {
        rest = r; // [0] version
    }
    // serial, signature, issuer.
    for _ in 0..3 {
        rest = der(rest)?.2;
    }
    let (_, validity, r) = der(rest)?;
    let (_, subject, r) = der(r)?;
    let (_, _spki, mut r) = der(r)?;
    let mut extensions = None;
    while !r.is_empty() {
        let (tag, contents, next) = der(r)?;
        if tag == 0xa3 {
            extensions = Some(der(contents)?.1);
        }
        r = next;
    }
    Some(Tbs {
        validity,
        subject,
        extensions,
    })
}

const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// Each attribute of a Name, in order: (OID, value bytes).
fn name_attributes(name: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut out = Vec::new();
    let mut rdns = name;
    while !rdns.is_empty() {
        let (_, set, r) = der(rdns)?;
        rdns = r;
        let mut atvs = set;
        while !atvs.is_empty() {
            let (_, atv, r) = der(atvs)?;
            atvs = r;
            let (_, oid, r) = der(atv)?;
            let (_, value, _) = der(r)?;
            out.push((oid, value));
        }
    }
    Some(out)
}

/// The subject of a DER certificate in `CN=..., O=...` form (empty for an
/// empty subject, as `openssl req -subj "/"` makes).
pub fn subject(cert: &[u8]) -> Option<String> {
    let attributes = name_attributes(tbs(cert)?.subject)?;
    let parts: Vec<String> = attributes
        .into_iter()
        .map(|(oid, value)| {
            let key = match oid {
                OID_CN => "CN".to_string(),
                [0x55, 0x04, 0x06] => "C".to_string(),
                [0x55, 0x04, 0x07] => "L".to_string(),
                [0x55, 0x04, 0x08] => "ST".to_string(),
                [0x55, 0x04, 0x0a] => "O".to_string(),
                [0x55, 0x04, 0x0b] => "OU".to_string(),
                [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress".into(),
                other => other.iter().fold(String::from("OID:"), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                }),
            };
            format!("{key}={}", String::from_utf8_lossy(value))
        })
        .collect();
    Some(parts.join(", "))
}

/// The subject's common names (usually one; none for an empty subject).
pub fn common_names(cert: &[u8]) -> Vec<String> {
    tbs(cert)
        .and_then(|t| name_attributes(t.subject))
        .unwrap_or_default()
        .into_iter()
        .filter(|(oid, _)| *oid == OID_CN)
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
        .collect()
}

/// The validity period as Unix seconds: (notBefore, notAfter).
pub fn validity(cert: &[u8]) -> Option<(i64, i64)> {
    let validity = tbs(cert)?.validity;
    let (tag, not_before, r) = der(validity)?;
    let not_before = parse_time(tag, not_before)?;
    let (tag, not_after, _) = der(r)?;
    let not_after = parse_time(tag, not_after)?;
    Some((not_before, not_after))
}

/// The value (the OCTET STRING's contents) of the extension `oid`:
/// `Some(None)` when the certificate does not have it.
fn extension<'a>(cert: &'a [u8], oid: &[u8]) -> Option<Option<&'a [u8]>> {
    let Some(mut exts) = tbs(cert)?.extensions else {
        return Some(None);
    };
    while !exts.is_empty() {
        let (_, ext, r) = der(exts)?;
        exts = r;
        let (_, id, rest) = der(ext)?;
        if id != oid {
            continue;
        }
        let (mut tag, mut value, r) = der(rest)?;
        if tag == 0x01 {
            // critical BOOLEAN, then the OCTET STRING.
            (tag, value, _) = der(r)?;
        }
        return (tag == 0x04).then_some(Some(value));
    }
    Some(None)
}

/// Whether the certificate's basicConstraints say `CA:TRUE` (false when the
/// extension is absent).
pub fn is_ca(cert: &[u8]) -> Option<bool> {
    let Some(value) = extension(cert, OID_BASIC_CONSTRAINTS)? else {
        return Some(false);
    };
    let (_, constraints, _) = der(value)?; // BasicConstraints SEQUENCE
    Some(match der(constraints) {
        Some((0x01, [flag], _)) => *flag != 0,
        _ => false,
    })
}

/// The DNS names and IP addresses of the subjectAltName extension, in
/// order (empty without the extension).
pub fn subject_alt_names(cert: &[u8]) -> Option<Vec<String>> {
    let Some(value) = extension(cert, OID_SUBJECT_ALT_NAME)? else {
        return Some(Vec::new());
    };
    let (_, mut names, _) = der(value)?; // GeneralNames SEQUENCE
    let mut out = Vec::new();
    while !names.is_empty() {
        let (tag, name, r) = der(names)?;
        names = r;
        match (tag, name.len()) {
            // [2] dNSName
            (0x82, _) => out.push(String::from_utf8_lossy(name).into_owned()),
            // [7] iPAddress
            (0x87, 4) => {
                let octets: [u8; 4] = name.try_into().ok()?;
                out.push(std::net::Ipv4Addr::from(octets).to_string());
            }
            (0x87, 16) => {
                let octets: [u8; 16] = name.try_into().ok()?;
                out.push(std::net::Ipv6Addr::from(octets).to_string());
            }
            _ => {}
        }
    }
    Some(out)
}

/// Parses a DER UTCTime (tag 0x17, `YYMMDDHHMMSSZ`, years 1950–2049) or
/// GeneralizedTime (tag 0x18, `YYYYMMDDHHMMSSZ`) into Unix seconds.
pub fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let (year, rest) = match (tag, text.len()) {
        (0x17, 13) => {
            let yy = digits(&text[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (0x18, 15) => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let hour = digits(&rest[4..6])?;
    let minute = digits(&rest[6..8])?;
    let second = digits(&rest[8..10])?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn digits(text: &[u8]) -> Option<i64> {
    text.iter().try_fold(0i64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A Unix time as its UTC date, `2026-05-01`.
pub fn date(unix_seconds: i64) -> String {
    let (y, m, d) = civil_from_days(unix_seconds.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn utc_and_generalized_times() {
        assert_eq!(parse_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(parse_time(0x17, b"260501000000Z"), Some(1_777_593_600));
        assert_eq!(parse_time(0x18, b"20260501000000Z"), Some(1_777_593_600));
        // UTCTime years 50..99 are 19xx, 00..49 are 20xx.
        assert_eq!(parse_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(0x17, b"500101000000Z"), Some(-631_152_000));
        // Past 2049 certificates use GeneralizedTime.
        assert_eq!(parse_time(0x18, b"20500101000000Z"), Some(2_524_608_000));
        assert_eq!(parse_time(0x18, b"99991231235959Z"), Some(253_402_300_799));
        // Leap days.
        assert!(parse_time(0x18, b"20240229120000Z").is_some());
        assert_eq!(parse_time(0x18, b"20230229120000Z"), None);
        assert!(parse_time(0x18, b"20000229000000Z").is_some());
        assert_eq!(parse_time(0x18, b"21000229000000Z"), None);
    }

    #[test]
    fn malformed_times_are_refused() {
        for (tag, text) in [
            (0x17, &b"2605010000Z"[..]),  // no seconds
            (0x17, b"260501000000+0100"), // not UTC
            (0x17, b"260501000000"),      // no Z
            (0x18, b"260501000000Z"),     // UTCTime text under the wrong tag
            (0x17, b"20260501000000Z"),   // and the other way round
            (0x18, b"20261301000000Z"),   // month 13
            (0x18, b"20260100000000Z"),   // day 0
            (0x18, b"20260431000000Z"),   // April 31
            (0x18, b"20260501240000Z"),   // hour 24
            (0x18, b"20260501006000Z"),   // minute 60
            (0x18, b"2026050100000aZ"),   // not a digit
            (0x18, b"20260501000000.5Z"), // fractions are not DER
            (0x04, b"20260501000000Z"),   // not a time at all
        ] {
            assert_eq!(
                parse_time(tag, text),
                None,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn dates_in_words() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_777_593_600), "2026-05-01");
        assert_eq!(date(1_777_593_600 + 86_399), "2026-05-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(-1), "1969-12-31");
        assert_eq!(date(253_402_300_799), "9999-12-31");
    }

    #[test]
    fn truncated_der_is_refused() {
        assert_eq!(subject(&[0x30, 0x05, 1]), None);
        assert_eq!(validity(&[0x30, 0x05, 1]), None);
        assert_eq!(is_ca(&[]), None);
        assert_eq!(subject_alt_names(&[]), None);
        assert!(common_names(&[0x30]).is_empty());
        assert_eq!(der(&[0x30, 0x85, 0, 0, 0, 0, 1]), None, "5-byte lengths");
    }
}
