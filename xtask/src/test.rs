//! The full test suite, as CI runs it: formatting, lints, the protocol crate
//! for wasm32, the web bundle, every native test (unit, property, interop
//! with the real Python server, bridge integration, the browser end to end
//! in Chromium and Firefox with the axe-core audit), the wasm tests in
//! headless Chromium and Firefox, a 1-minute soak (`cargo xtask soak`)
//! and each protocol fuzz target for a bounded time (`DUMDUM_FUZZ_SECONDS`,
//! 30 by default).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::setup::{root, run};

/// Passed and failed counts summed over cargo's `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    /// Adds the counts of one `test result: ok. 3 passed; 0 failed; ...` line.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            if let (Some(n), Some(what)) = (words.next(), words.next())
                && let Ok(n) = n.parse::<u64>()
            {
                match what {
                    "passed" => self.passed += n,
                    "failed" => self.failed += n,
                    _ => {}
                }
            }
        }
    }
}

/// Runs a `cargo test` command, echoing its output and counting its results.
fn run_tests(cmd: &mut Command, tally: &mut Tally) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("could not start cargo test")?;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.context("reading cargo test output")?;
            println!("{line}");
            tally.add_line(&line);
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        println!(
            "tests: {} passed, {} failed",
            tally.passed,
            tally.failed.max(1)
        );
        bail!("`{cmd:?}` failed with {status}");
    }
    Ok(())
}

/// Disk a run on a new machine fills, measured (`.ci/run` on a fresh clone,
/// nothing installed): 3.0 GiB in the clone (`target/debug` 2.1), 1.1 GiB
/// of crates and tools in `~/.cargo`, about 1.4 GiB of Debian packages and the venv.
const DISK_NEEDED_MIB: u64 = 6 * 1024;

/// Free MiB on the file system holding `path`, from `df -Pk`.
fn free_mib(path: &std::path::Path) -> Option<u64> {
    let out = crate::setup::output(Command::new("df").arg("-Pk").arg(path))?;
    parse_df_free_kib(&out).map(|kib| kib / 1024)
}

/// The "Available" column (KiB) of `df -Pk`'s one data line.
fn parse_df_free_kib(out: &str) -> Option<u64> {
    out.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// Says how much disk is free where the build goes; with `warn`, warns in
/// words when it is less than a cold run needs: a full disk otherwise shows
/// only as a linker's "No space left on device" deep in the last step.
fn report_disk(warn: bool) {
    let Some(free) = free_mib(&root()) else {
        return;
    };
    eprintln!(
        "xtask test: {:.1} GiB free on the build's disk",
        free as f64 / 1024.0
    );
    if warn && free < DISK_NEEDED_MIB {
        eprintln!(
            "xtask test: warning: a run on a new machine fills about {} GiB (the build, \
             ~/.cargo and the Debian packages); with {:.1} GiB free it may stop with \
             \"No space left on device\"",
            DISK_NEEDED_MIB / 1024,
            free as f64 / 1024.0
        );
    }
}

pub(crate) fn test(_args: &[String]) -> Result<()> {
    report_disk(true);
    crate::setup::setup()?;
    let cargo = || {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(root());
        cmd
    };
    const WASM: [&str; 2] = ["--target", "wasm32-unknown-unknown"];
    const DENY_WARNINGS: [&str; 3] = ["--", "-D", "warnings"];
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo()
        .args(["clippy", "--workspace", "--all-targets"])
        .args(DENY_WARNINGS))?;
    run(cargo()
        .args(["clippy", "-p", "dumdum-client-wasm", "--all-targets"])
        .args(WASM)
        .args(DENY_WARNINGS))?;
    run(cargo().args(["build", "-p", "dumdum-protocol"]).args(WASM))?;
    crate::dist::dist(&[])?;
    let mut tally = Tally::default();
    // The bridge's test-only features are turned on for the whole
    // workspace's build (`--workspace --features dumdum-bridge/…`), not with
    // `-p dumdum-bridge`: with `-p`, Cargo unifies the dependencies'
    // features over the bridge alone, and the `--workspace` test build then
    // compiles about 45 of them (tokio, hyper, axum, serde, …) a second time.
    const BRIDGE: [&str; 2] = ["test", "--workspace"];
    // The page inside the binary (`cargo xtask release`): the bridge's
    // assets tests with the table of the page just built.
    let (page, _) = crate::release::embed_built_page()?;
    run_tests(
        cargo()
            .args(BRIDGE)
            .args(["--features", "dumdum-bridge/embed-page"])
            .args(["--lib", "assets::"])
            .env("DUMDUM_EMBEDDED_PAGE", &page),
        &mut tally,
    )?;
    // The same page over HTTP: encodings, cache policy, security headers.
    run_tests(
        cargo()
            .args(BRIDGE)
            .args(["--features", "dumdum-bridge/embed-page"])
            .args(["--test", "serving"])
            .env("DUMDUM_SKIP_DIST", "1")
            .env("DUMDUM_EMBEDDED_PAGE", &page),
        &mut tally,
    )?;
    // The browser tests use the bundle just built; the `trunk serve` test,
    // the haproxy and nginx tests and each browser test in Chromium and in
    // Firefox must run (setup installed trunk, haproxy, nginx, both
    // browsers, geckodriver and axe-core), not skip.
    run_tests(
        cargo()
            .args(["test", "--workspace"])
            .env("DUMDUM_SKIP_DIST", "1")
            .env("DUMDUM_REQUIRE_TRUNK", "1")
            .env("DUMDUM_REQUIRE_PROXIES", "1")
            .env("DUMDUM_REQUIRE_BROWSERS", "1"),
        &mut tally,
    )?;
    run_tests(
        cargo()
            .args(["test", "-p", "dumdum-client-wasm"])
            .args(WASM)
            .env(
                "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
                "wasm-bindgen-test-runner",
            )
            .env_remove("GECKODRIVER")
            .env("CHROMEDRIVER", "/usr/bin/chromedriver"),
        &mut tally,
    )?;
    // The same wasm tests in headless Firefox (the runner picks
    // geckodriver when GECKODRIVER is set).
    run_tests(
        cargo()
            .args(["test", "-p", "dumdum-client-wasm"])
            .args(WASM)
            .env(
                "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
                "wasm-bindgen-test-runner",
            )
            .env_remove("CHROMEDRIVER")
            .env("GECKODRIVER", crate::setup::geckodriver_path()),
        &mut tally,
    )?;
    // One minute of chaos through the bridge the tests just built (a debug
    // build: a release build would add minutes); it counts as one test.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), std::path::PathBuf::from);
    let bridge = target.join("debug/dumdum-bridge");
    let soak = crate::soak::soak(&[
        "--minutes".into(),
        "1".into(),
        "--bridge".into(),
        bridge.display().to_string(),
    ]);
    match soak {
        Ok(()) => tally.passed += 1,
        Err(e) => {
            tally.failed += 1;
            println!("tests: {} passed, {} failed", tally.passed, tally.failed);
            return Err(e.context("the 1-minute soak failed"));
        }
    }
    // After the soak, which runs the debug binary built without it.
    // A panic injected into one session's task (test-only feature): the
    // process, other sessions and the counts survive it.
    run_tests(
        cargo()
            .args(BRIDGE)
            .args(["--features", "dumdum-bridge/fault-injection"])
            .args(["--test", "fault"]),
        &mut tally,
    )?;
    // Each fuzz target for DUMDUM_FUZZ_SECONDS (30 by default); a target
    // counts as one test.
    let fuzz = crate::fuzz::run_all(&[])?;
    tally.passed += fuzz.passed;
    tally.failed += fuzz.failed;
    if fuzz.failed > 0 {
        println!("tests: {} passed, {} failed", tally.passed, tally.failed);
        bail!("{} fuzz target(s) found a crash", fuzz.failed);
    }
    report_disk(false);
    eprintln!("xtask test: every check passed");
    println!("tests: {} passed, {} failed", tally.passed, tally.failed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_available_column() {
        let out = "Filesystem     1024-blocks      Used Available Capacity Mounted on\n\
                   /dev/vda         263174212  11530752  83886080      13% /\n";
        assert_eq!(parse_df_free_kib(out), Some(83_886_080));
        assert_eq!(parse_df_free_kib("Filesystem\n"), None);
        assert_eq!(parse_df_free_kib(""), None);
    }

    #[test]
    fn tally_sums_cargo_result_lines() {
        let mut t = Tally::default();
        t.add_line("test result: ok. 35 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        t.add_line(
            "test result: FAILED. 3 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out",
        );
        t.add_line(
            "test result: ok. 6 passed; 0 failed; 0 ignored; 0 filtered out; finished in 0.64s",
        );
        t.add_line("running 6 tests");
        assert_eq!(
            t,
            Tally {
                passed: 44,
                failed: 2
            }
        );
    }
}
