//! Certificates made with the real `openssl` command line, the way dumdum
//! operators make them (the reference README says
//! `openssl req -new -x509 -days 365 -nodes -out dumdum.crt -keyout dumdum.key`).
//! Each one lives in its own temporary directory as `dumdum.crt` and
//! `dumdum.key`. Every command is bounded in time; a failure panics with
//! openssl's own words.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{TempDir, TestCert};

/// How long one openssl command may take (RSA key generation included).
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `openssl args…` in `dir` with `stdin`; returns its standard output.
pub fn run(dir: &Path, args: &[&str], stdin: &str) -> Vec<u8> {
    let mut cmd = Command::new("openssl");
    cmd.args(args).current_dir(dir);
    crate::run_bounded(
        cmd,
        stdin,
        OPENSSL_TIMEOUT,
        &format!("openssl {args:?} (these tests need the openssl command line)"),
    )
}

/// The reference README's certificate command:
/// `openssl req -new -x509 -days 365 -nodes -out dumdum.crt -keyout dumdum.key`.
const README_REQ: [&str; 10] = [
    "req",
    "-new",
    "-x509",
    "-days",
    "365",
    "-nodes",
    "-out",
    "dumdum.crt",
    "-keyout",
    "dumdum.key",
];

/// A fresh RSA key (`dumdum.key`) and a request for `subject` (`dumdum.csr`).
fn new_key_and_csr(dir: &Path, subject: &str) {
    run(
        dir,
        &[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-keyout",
            "dumdum.key",
            "-out",
            "dumdum.csr",
            "-subj",
            subject,
        ],
        "",
    );
}

/// A time as openssl's `-startdate`/`-enddate` want it: `YYYYMMDDHHMMSSZ`.
pub fn openssl_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .expect("a time after 1970")
        .as_secs();
    let days = i64::try_from(secs / 86_400).unwrap();
    let rem = secs % 86_400;
    let (year, month, day) = dumdum_protocol::calendar::civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl TestCert {
    /// Reads `dumdum.crt` and `dumdum.key` that openssl wrote in `dir`.
    fn from_openssl(dir: TempDir) -> TestCert {
        let cert_path = dir.path().join("dumdum.crt");
        let key_path = dir.path().join("dumdum.key");
        let cert_der = run(
            dir.path(),
            &["x509", "-in", "dumdum.crt", "-outform", "DER"],
            "",
        );
        TestCert {
            cert_pem: std::fs::read_to_string(&cert_path).expect("openssl wrote dumdum.crt"),
            key_pem: std::fs::read_to_string(&key_path).expect("openssl wrote dumdum.key"),
            cert_der,
            cert_path,
            key_path,
            _dir: dir,
        }
    }

    /// Exactly the reference README's command,
    /// `openssl req -new -x509 -days 365 -nodes -out dumdum.crt -keyout dumdum.key`,
    /// with every prompt skipped by pressing Enter (openssl's defaults:
    /// `C=AU, ST=Some-State, O=Internet Widgits Pty Ltd`, no CN). With
    /// OpenSSL 3 that is a CA certificate (`CA:TRUE`) without any name a
    /// client could check.
    pub fn openssl_readme() -> TestCert {
        let dir = TempDir::new("openssl");
        run(dir.path(), &README_REQ, &"\n".repeat(16));
        TestCert::from_openssl(dir)
    }

    /// The README's command with `extra` arguments, for example
    /// `["-subj", "/"]` (prompts skipped, empty subject) or
    /// `["-subj", "/CN=chat.example.org", "-addext", "subjectAltName=DNS:chat.example.org"]`.
    pub fn openssl_req(extra: &[&str]) -> TestCert {
        let dir = TempDir::new("openssl");
        let mut args = README_REQ.to_vec();
        args.extend_from_slice(extra);
        run(dir.path(), &args, "");
        TestCert::from_openssl(dir)
    }

    /// A self-signed certificate like the README's (`CA:TRUE`) valid only
    /// from `not_before` to `not_after`, made with `openssl ca -selfsign
    /// -startdate … -enddate …` (OpenSSL 3.0's `req` and `x509` cannot
    /// date a certificate in the past).
    pub fn openssl_dated(subject: &str, not_before: SystemTime, not_after: SystemTime) -> TestCert {
        let dir = TempDir::new("openssl");
        std::fs::write(
            dir.path().join("ca.cnf"),
            "[ ca ]\n\
             default_ca = dumdum\n\
             [ dumdum ]\n\
             database = index.txt\n\
             new_certs_dir = .\n\
             serial = serial\n\
             default_md = sha256\n\
             policy = anything\n\
             unique_subject = no\n\
             x509_extensions = readme\n\
             [ anything ]\n\
             commonName = optional\n\
             [ readme ]\n\
             subjectKeyIdentifier = hash\n\
             basicConstraints = critical,CA:TRUE\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("index.txt"), "").unwrap();
        std::fs::write(dir.path().join("serial"), "01\n").unwrap();
        new_key_and_csr(dir.path(), subject);
        let (start, end) = (openssl_time(not_before), openssl_time(not_after));
        run(
            dir.path(),
            &[
                "ca",
                "-batch",
                "-config",
                "ca.cnf",
                "-selfsign",
                "-keyfile",
                "dumdum.key",
                "-in",
                "dumdum.csr",
                "-out",
                "dumdum.crt",
                "-notext",
                "-startdate",
                &start,
                "-enddate",
                &end,
            ],
            "",
        );
        TestCert::from_openssl(dir)
    }

    /// A CA as an operator makes one: `openssl req -new -x509 -days 365
    /// -nodes -out dumdum.crt -keyout dumdum.key -subj SUBJECT` (`CA:TRUE`).
    pub fn openssl_ca(subject: &str) -> TestCert {
        TestCert::openssl_req(&["-subj", subject])
    }

    /// A server certificate signed by this CA: `openssl req -new` for
    /// `subject`, then `openssl x509 -req -CA … -extfile` with
    /// `basicConstraints = critical,CA:FALSE` and `subjectAltName = san`
    /// (for example `DNS:localhost,IP:127.0.0.1`; none when `san` is empty:
    /// the name is then only in the subject's CN).
    pub fn openssl_issue(&self, subject: &str, san: &str) -> TestCert {
        let dir = TempDir::new("openssl");
        std::fs::copy(&self.cert_path, dir.path().join("ca.crt")).unwrap();
        std::fs::copy(&self.key_path, dir.path().join("ca.key")).unwrap();
        let mut ext = String::from("basicConstraints = critical,CA:FALSE\n");
        if !san.is_empty() {
            ext.push_str(&format!("subjectAltName = {san}\n"));
        }
        std::fs::write(dir.path().join("server.ext"), ext).unwrap();
        new_key_and_csr(dir.path(), subject);
        run(
            dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                "dumdum.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "365",
                "-out",
                "dumdum.crt",
                "-extfile",
                "server.ext",
            ],
            "",
        );
        TestCert::from_openssl(dir)
    }

    /// What `openssl x509 -in dumdum.crt -noout -fingerprint -sha256`
    /// prints after `=`: `AB:CD:…`.
    pub fn openssl_fingerprint(&self) -> String {
        let dir = self
            .cert_path
            .parent()
            .expect("the certificate's directory");
        let out = run(
            dir,
            &[
                "x509",
                "-in",
                "dumdum.crt",
                "-noout",
                "-fingerprint",
                "-sha256",
            ],
            "",
        );
        let out = String::from_utf8(out).expect("openssl prints text");
        out.trim()
            .split_once('=')
            .map(|(_, fp)| fp.to_string())
            .unwrap_or_else(|| panic!("unexpected openssl output {out:?}"))
    }

    /// `openssl x509 -in dumdum.crt -noout -text`.
    pub fn openssl_text(&self) -> String {
        let dir = self
            .cert_path
            .parent()
            .expect("the certificate's directory");
        let out = run(dir, &["x509", "-in", "dumdum.crt", "-noout", "-text"], "");
        String::from_utf8(out).expect("openssl prints text")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_times() {
        assert_eq!(openssl_time(UNIX_EPOCH), "19700101000000Z");
        assert_eq!(
            openssl_time(UNIX_EPOCH + Duration::from_secs(1_777_593_600 + 3661)),
            "20260501010101Z"
        );
        assert_eq!(
            openssl_time(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229000000Z"
        );
    }
}
