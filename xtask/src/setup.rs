//! Installs what a fresh machine lacks, and skips what is present, so that
//! reruns are fast: the wasm target, Chromium, ChromeDriver, Firefox ESR,
//! openssl, HAProxy and nginx (for the load-balancer tests), the Python
//! venv with the reference server, `wasm-bindgen-test-runner` (and
//! `wasm-bindgen`) at the exact version Cargo.lock pins, trunk at
//! [`TRUNK_VERSION`] for the `trunk serve` development loop and its test,
//! geckodriver at [`GECKODRIVER_VERSION`] and axe-core at
//! [`AXE_CORE_VERSION`] for the browser tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The trunk release the development loop (`cd www && trunk serve`) is
/// tested with; newer releases need a newer rustc.
pub(crate) const TRUNK_VERSION: &str = "0.21.14";

/// The cargo-fuzz release `cargo xtask fuzz` runs the fuzz targets with.
pub(crate) const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The geckodriver release (crates.io) the browser tests drive Firefox
/// with. Not in Cargo.lock (a binary, not a dependency): pinned here.
pub(crate) const GECKODRIVER_VERSION: &str = "0.37.1";

/// The axe-core release (npm) the accessibility test injects; installed
/// into `target/tools` (`bridge/tests/browser_a11y.rs` reads it there).
pub(crate) const AXE_CORE_VERSION: &str = "4.14.1";

/// The workspace root (xtask lives one level below it).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command, echoing it, and fails unless it succeeds.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {}", describe(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", describe(cmd));
    }
    Ok(())
}

/// A command's stdout, or `None` when it cannot run or fails.
pub(crate) fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Installs what the tests need, skipping what is there. The downloads
/// (apt, the Python venv, axe-core) run beside the `cargo install` builds,
/// which run one after another: they use both cores each, and two side by
/// side took longer than one after the other (measured on a new
/// `CARGO_HOME`: 14.5 minutes for the four in two lanes, 13.3 in one).
pub(crate) fn setup() -> Result<()> {
    wasm_target()?;
    type Step = fn() -> Result<()>;
    let lanes: [&[Step]; 2] = [
        &[apt_packages, venv, axe_core],
        &[test_runner, trunk, geckodriver, cargo_fuzz],
    ];
    let mut errors: Vec<anyhow::Error> = std::thread::scope(|scope| {
        let handles: Vec<_> = lanes
            .iter()
            .map(|lane| scope.spawn(move || lane.iter().try_for_each(|step| step())))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(r) => r.err(),
                Err(_) => Some(anyhow::anyhow!("a setup thread panicked")),
            })
            .collect()
    });
    if errors.len() > 1 {
        let all: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
        bail!("{} setup steps failed:\n{}", all.len(), all.join("\n"));
    }
    errors.pop().map_or(Ok(()), Err)
}

pub(crate) fn wasm_target() -> Result<()> {
    let installed =
        output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if installed
        .lines()
        .any(|l| l.trim() == "wasm32-unknown-unknown")
    {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))
}

/// Debian packages the tests run, each with a file that shows it is there.
/// Chromium and its driver must come from one install to match.
const APT_PACKAGES: [(&str, &str); 6] = [
    ("chromium", "/usr/bin/chromium"),
    ("chromium-driver", "/usr/bin/chromedriver"),
    // The browser tests run in Firefox ESR too (geckodriver comes from
    // crates.io, below).
    ("firefox-esr", "/usr/bin/firefox-esr"),
    // The TLS tests make certificates as operators do, with the openssl CLI.
    ("openssl", "/usr/bin/openssl"),
    // The load-balancer tests run `deploy/haproxy.cfg` and
    // `deploy/nginx.conf` as checked in, with Debian's own builds
    // (haproxy 2.6, nginx 1.22).
    ("haproxy", "/usr/sbin/haproxy"),
    ("nginx", "/usr/sbin/nginx"),
];

/// The packages of `wanted` whose file is missing.
fn missing_packages<'a>(
    wanted: &[(&'a str, &str)],
    exists: impl Fn(&Path) -> bool,
) -> Vec<&'a str> {
    wanted
        .iter()
        .filter(|(_, file)| !exists(Path::new(file)))
        .map(|(package, _)| *package)
        .collect()
}

fn apt_packages() -> Result<()> {
    let missing = missing_packages(&APT_PACKAGES, Path::exists);
    if missing.is_empty() {
        return Ok(());
    }
    let uid = output(Command::new("id").arg("-u")).unwrap_or_default();
    let sudo: &[&str] = if uid.trim() == "0" { &[] } else { &["sudo"] };
    let apt = |args: &[&str]| {
        let mut all: Vec<&str> = sudo.to_vec();
        all.push("apt-get");
        all.extend_from_slice(args);
        let mut cmd = Command::new(all[0]);
        cmd.args(&all[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd)
    };
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq"];
    args.extend(&missing);
    apt(&args).with_context(|| format!("installing Debian's {} for the tests", missing.join(", ")))
}

fn venv() -> Result<()> {
    let root = root();
    let venv = root.join(".venv");
    let requirements = root.join("testkit/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let stamp = venv.join(".dumdum-web-requirements");
    if std::fs::read_to_string(&stamp).is_ok_and(|have| have == wanted)
        && venv.join("bin/dumdum-server").exists()
    {
        return Ok(());
    }
    if !venv.join("bin/python").exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            .context("creating the Python venv (python3 -m venv) for the reference server")?;
    }
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))
    .context("installing the Python reference implementation")?;
    std::fs::write(&stamp, wanted)?;
    Ok(())
}

/// The `wasm-bindgen` version Cargo.lock pins.
pub(crate) fn locked_wasm_bindgen() -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\""
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \""))
        {
            return Ok(v.trim_end_matches('"').to_string());
        }
    }
    bail!("Cargo.lock has no wasm-bindgen package")
}

/// `cargo` for installing a test tool once per machine: its release
/// profile at opt-level 1, without LTO, in 16 codegen units. On 2 cores that
/// takes wasm-bindgen-cli from about 5 minutes to 3, and its test runner
/// runs the wasm tests in the same time (both measured).
fn tool_install() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1")
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16");
    cmd
}

/// `cargo install --debug` for a test tool whose speed does not matter
/// (it drives a browser or cargo), without debug info: trunk builds in 4.9
/// minutes instead of 5.6 (measured, on a new `CARGO_HOME`).
fn debug_tool_install() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.env("CARGO_PROFILE_DEV_DEBUG", "0");
    cmd
}

fn test_runner() -> Result<()> {
    let version = locked_wasm_bindgen()?;
    let have =
        output(Command::new("wasm-bindgen-test-runner").arg("--version")).unwrap_or_default();
    // Prints "wasm-bindgen-test-runner 0.2.x".
    if have.split_whitespace().nth(1) == Some(version.as_str()) {
        return Ok(());
    }
    // Not --locked: its lock file names a webpki-roots version this
    // registry mirror lacks (shared/notes/toolchain.md).
    run(tool_install().args([
        "install",
        "wasm-bindgen-cli",
        "--version",
        &format!("={version}"),
    ]))
    .context("installing wasm-bindgen-test-runner")
}

/// Whether `trunk --version` output names exactly `version`.
fn trunk_version_is(output: &str, version: &str) -> bool {
    // Prints "trunk 0.21.14".
    let mut words = output.split_whitespace();
    words.next() == Some("trunk") && words.next() == Some(version)
}

fn trunk() -> Result<()> {
    let have = output(Command::new("trunk").arg("--version")).unwrap_or_default();
    if trunk_version_is(&have, TRUNK_VERSION) {
        return Ok(());
    }
    // Once per machine. A debug build: trunk only drives cargo and
    // wasm-bindgen here, and a release build of it takes 10-18 minutes on 2
    // cores against about 5 for this one (measured).
    run(debug_tool_install().args([
        "install",
        "trunk",
        "--version",
        TRUNK_VERSION,
        "--locked",
        "--debug",
    ]))
    .context("installing trunk for the `trunk serve` development loop test")
}

/// Installs cargo-fuzz at [`CARGO_FUZZ_VERSION`] unless `cargo fuzz
/// --version` already names it (about 1.5 minutes, once).
pub(crate) fn cargo_fuzz() -> Result<()> {
    // Prints "cargo-fuzz 0.13.2".
    let have = output(Command::new("cargo").args(["fuzz", "--version"])).unwrap_or_default();
    if have.split_whitespace().nth(1) == Some(CARGO_FUZZ_VERSION) {
        return Ok(());
    }
    run(tool_install().args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
    ]))
    .context("installing cargo-fuzz for the fuzz targets")
}

/// Whether `geckodriver --version` output names exactly `version`.
fn geckodriver_version_is(output: &str, version: &str) -> bool {
    // Prints "geckodriver 0.37.1" and then its source and licence.
    let mut words = output.split_whitespace();
    words.next() == Some("geckodriver") && words.next() == Some(version)
}

/// Where geckodriver is: on `PATH`, else where `cargo install` puts it
/// (`$CARGO_HOME/bin`, `~/.cargo/bin`).
pub(crate) fn geckodriver_path() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("geckodriver"))
            .find(|p| p.is_file())
    });
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    on_path
        .or_else(|| cargo_home.map(|c| c.join("bin/geckodriver")))
        .unwrap_or_else(|| PathBuf::from("geckodriver"))
}

/// Installs geckodriver at [`GECKODRIVER_VERSION`] unless `geckodriver
/// --version` already names it (`--locked`; about 1.5 minutes, once).
fn geckodriver() -> Result<()> {
    let have = output(Command::new(geckodriver_path()).arg("--version")).unwrap_or_default();
    if geckodriver_version_is(&have, GECKODRIVER_VERSION) {
        return Ok(());
    }
    // A debug build: it only relays WebDriver commands (2.9 minutes at
    // opt-level 1 on a new machine, 1.5 as a debug build).
    run(debug_tool_install().args([
        "install",
        "geckodriver",
        "--version",
        GECKODRIVER_VERSION,
        "--locked",
        "--debug",
    ]))
    .context("installing geckodriver for the browser tests in Firefox")
}

/// The top-level `"version": "x.y.z"` of a package.json text (npm writes
/// it before any nested object that could hold another `version`).
fn package_version(json: &str) -> Option<String> {
    let rest = &json[json.find("\"version\"")? + "\"version\"".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

/// Installs axe-core at [`AXE_CORE_VERSION`] from npm into `target/tools`
/// unless it is there (seconds, once).
pub(crate) fn axe_core() -> Result<()> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let tools = target.join("tools");
    let manifest = tools.join("node_modules/axe-core/package.json");
    let have = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|j| package_version(&j));
    if have.as_deref() == Some(AXE_CORE_VERSION) {
        return Ok(());
    }
    std::fs::create_dir_all(&tools)?;
    run(Command::new("npm")
        .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
        .arg(&tools)
        .arg(format!("axe-core@{AXE_CORE_VERSION}")))
    .context("installing axe-core from npm for the accessibility test (needs Node.js and npm)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_version_is_matched_exactly() {
        assert!(trunk_version_is("trunk 0.21.14\n", "0.21.14"));
        assert!(!trunk_version_is("trunk 0.21.1\n", "0.21.14"));
        assert!(!trunk_version_is("trunk 0.22.0", "0.21.14"));
        assert!(!trunk_version_is("", "0.21.14"));
    }

    #[test]
    fn geckodriver_version_is_matched_exactly() {
        assert!(geckodriver_version_is(
            "geckodriver 0.37.1\n\nThe source code of this program is available from\n",
            "0.37.1"
        ));
        assert!(!geckodriver_version_is("geckodriver 0.37.10", "0.37.1"));
        assert!(!geckodriver_version_is("", "0.37.1"));
    }

    #[test]
    fn package_version_reads_the_version_field() {
        assert_eq!(
            package_version(r#"{"name": "axe-core", "version": "4.14.1"}"#).as_deref(),
            Some("4.14.1")
        );
        assert_eq!(package_version("{}"), None);
        assert_eq!(package_version("not json"), None);
    }

    #[test]
    fn only_missing_packages_are_installed() {
        let present = |p: &Path| p == Path::new("/usr/bin/openssl");
        assert_eq!(
            missing_packages(&APT_PACKAGES, present),
            [
                "chromium",
                "chromium-driver",
                "firefox-esr",
                "haproxy",
                "nginx"
            ]
        );
        assert!(missing_packages(&APT_PACKAGES, |_| true).is_empty());
    }
}
