//! `cargo xtask fuzz`: runs every cargo-fuzz target of `protocol/fuzz` for a
//! bounded time from the checked-in corpus (`protocol/fuzz/seeds/<target>`).
//!
//! The machine's stable toolchain builds the targets with
//! `RUSTC_BOOTSTRAP=1` (cargo-fuzz passes `-Z` flags). The build keeps its
//! own target dir, `protocol/fuzz/target`. New inputs libFuzzer finds go to
//! `protocol/fuzz/target/fuzz-corpus/<target>` (ignored by git), never into
//! the checked-in seeds, unless `--merge` asks for it. A crash fails the
//! command with the crash file and the command that reproduces it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

use crate::setup::root;

/// The targets, in `protocol/fuzz/Cargo.toml` order.
pub(crate) const TARGETS: [&str; 7] = [
    "client_message_decode",
    "server_message_decode",
    "decoder_chunks",
    "client_handle_data",
    "server_handle_data",
    "session_content_parse",
    "websocket_decode",
];

/// Seconds per target when neither `--seconds` nor the environment says.
const DEFAULT_SECONDS: u64 = 30;

/// The environment variable that sets the seconds per target (the test
/// command reads it too).
pub(crate) const SECONDS_ENV: &str = "DUMDUM_FUZZ_SECONDS";

/// The protocol crate has no `unsafe` code, so AddressSanitizer finds
/// nothing a panic would not; without it builds and runs are about twice as
/// fast. Debug assertions and overflow checks stay on (cargo-fuzz's default).
const BUILD_FLAGS: [&str; 2] = ["--sanitizer", "none"];

const USAGE: &str = "usage: cargo xtask fuzz [--seconds N] [--target NAME]... [--merge]

Runs each cargo-fuzz target of protocol/fuzz for N seconds (default 30, or
$DUMDUM_FUZZ_SECONDS) from the checked-in corpus protocol/fuzz/seeds/<target>,
as many side by side as there are CPUs.
New inputs are kept in protocol/fuzz/target/fuzz-corpus/<target>; --merge
adds those that reach new coverage to the checked-in seeds (libFuzzer -merge=1).";

#[derive(Debug, PartialEq, Eq)]
struct Options {
    seconds: u64,
    targets: Vec<String>,
    merge: bool,
}

fn parse(args: &[String], env_seconds: Option<&str>) -> Result<Options> {
    let mut seconds = match env_seconds {
        Some(s) => s
            .trim()
            .parse()
            .with_context(|| format!("{SECONDS_ENV}={s:?} is not a number of seconds"))?,
        None => DEFAULT_SECONDS,
    };
    let mut targets = Vec::new();
    let mut merge = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a value")?;
                seconds = v
                    .parse()
                    .with_context(|| format!("--seconds {v:?} is not a number"))?;
            }
            "--target" => {
                let t = it.next().context("--target needs a name")?;
                if !TARGETS.contains(&t.as_str()) {
                    bail!(
                        "unknown fuzz target {t:?}; the targets: {}",
                        TARGETS.join(", ")
                    );
                }
                targets.push(t.clone());
            }
            "--merge" => merge = true,
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    if seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    Ok(Options {
        seconds,
        targets,
        merge,
    })
}

fn fuzz_dir() -> PathBuf {
    root().join("protocol/fuzz")
}

/// `cargo fuzz <sub> --sanitizer none ...` in `protocol/fuzz`.
fn cargo_fuzz(sub: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(fuzz_dir())
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", sub])
        .args(BUILD_FLAGS);
    cmd
}

/// The command a developer runs to reproduce a crash with `file`.
fn reproduce(target: &str, file: &Path) -> String {
    format!(
        "cd {} && RUSTC_BOOTSTRAP=1 cargo fuzz run {} {target} {}",
        fuzz_dir().display(),
        BUILD_FLAGS.join(" "),
        file.display()
    )
}

/// Files under `dir` (none when it does not exist).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// libFuzzer's closing `#N DONE cov: C ft: F corp: K/S ...` line, shortened.
fn summary(log: &str) -> String {
    log.lines()
        .rev()
        .find(|l| l.contains("DONE") && l.contains("cov:"))
        .map(|l| l.trim_start_matches('#').trim().to_string())
        .unwrap_or_else(|| "no summary line".into())
}

/// libFuzzer's report of a failure: from the panic (or libFuzzer's own
/// error) on, at most 40 lines, without the dictionary and progress lines.
fn report_of(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.starts_with('"') && !l.starts_with('#'))
        .collect();
    let start = lines
        .iter()
        .position(|l| l.contains("panicked at") || l.contains("==ERROR:"))
        .unwrap_or(lines.len().saturating_sub(40));
    lines[start..]
        .iter()
        .take(40)
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

/// What one target's run found.
struct Outcome {
    target: String,
    failure: Option<String>,
}

/// Runs the targets side by side, one per CPU (libFuzzer runs one thread):
/// each still gets its full `seconds`. Outcomes in the targets' order.
fn run_targets(targets: &[String], seconds: u64) -> Result<Vec<Outcome>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(targets.len())
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, Result<Outcome>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(target) = targets.get(i) else {
                            return mine;
                        };
                        mine.push((i, run_target(target, seconds)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    ensure!(
        results.len() == targets.len(),
        "a fuzz worker thread panicked"
    );
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

fn run_target(target: &str, seconds: u64) -> Result<Outcome> {
    let dir = fuzz_dir();
    let seeds = dir.join("seeds").join(target);
    let corpus = dir.join("target/fuzz-corpus").join(target);
    let logs = dir.join("target/fuzz-logs");
    let artifacts = dir.join("artifacts").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    std::fs::create_dir_all(&logs)?;
    std::fs::create_dir_all(&artifacts)?;
    let before = files_in(&artifacts);
    let log_path = logs.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    // The first corpus directory receives new inputs; the seeds are only read.
    let mut cmd = cargo_fuzz("run");
    cmd.arg(target)
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // One input running this long is a hang: report it as a failure.
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    eprintln!(
        "+ fuzz {target} for {seconds} s (log: {})",
        log_path.display()
    );
    let status = cmd
        .status()
        .with_context(|| format!("could not start cargo fuzz run {target}"))?;
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let found: Vec<PathBuf> = files_in(&artifacts)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    if status.success() && found.is_empty() {
        println!("fuzz {target}: ok, {}", summary(&text));
        return Ok(Outcome {
            target: target.into(),
            failure: None,
        });
    }
    let tail = report_of(&text);
    let mut failure = format!("cargo fuzz run {target} exited with {status}\n{tail}\n");
    if found.is_empty() {
        failure += &format!("(no crash file; the whole log is {})\n", log_path.display());
    }
    for f in &found {
        failure += &format!(
            "crash file: {}\nreproduce:  {}\n",
            f.display(),
            reproduce(target, f)
        );
    }
    println!("fuzz {target}: FAILED");
    Ok(Outcome {
        target: target.into(),
        failure: Some(failure),
    })
}

/// Adds the inputs of this machine's corpus that reach new coverage to the
/// checked-in seeds.
fn merge(target: &str) -> Result<()> {
    let dir = fuzz_dir();
    let mut cmd = cargo_fuzz("run");
    cmd.arg(target)
        .arg(dir.join("seeds").join(target))
        .arg(dir.join("target/fuzz-corpus").join(target))
        .args(["--", "-merge=1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    crate::setup::run(&mut cmd).with_context(|| format!("merging the corpus of {target}"))
}

/// Passed and failed targets.
pub(crate) struct Report {
    pub passed: u64,
    pub failed: u64,
}

/// Builds every target and runs those asked for; fails on any crash.
pub(crate) fn fuzz(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let report = run_all(args)?;
    if report.failed > 0 {
        bail!("{} fuzz target(s) failed", report.failed);
    }
    Ok(())
}

/// Like [`fuzz`], returning the counts instead of failing on a crash (the
/// failures are printed).
pub(crate) fn run_all(args: &[String]) -> Result<Report> {
    let env = std::env::var(SECONDS_ENV).ok();
    let opts = parse(args, env.as_deref())?;
    crate::setup::cargo_fuzz()?;
    let t = Instant::now();
    crate::setup::run(&mut cargo_fuzz("build")).context("building the fuzz targets")?;
    eprintln!(
        "xtask fuzz: targets built in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let outcomes = run_targets(&opts.targets, opts.seconds)?;
    eprintln!(
        "xtask fuzz: {} target(s) ran in {:.0} s",
        outcomes.len(),
        t.elapsed().as_secs_f64()
    );
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    for o in &failed {
        eprintln!(
            "\nfuzz target {} found a crash:\n{}",
            o.target,
            o.failure.as_deref().unwrap_or_default()
        );
    }
    if opts.merge && failed.is_empty() {
        for target in &opts.targets {
            merge(target)?;
        }
        eprintln!(
            "xtask fuzz: new coverage merged into protocol/fuzz/seeds (review and commit it)"
        );
    }
    Ok(Report {
        passed: (outcomes.len() - failed.len()) as u64,
        failed: failed.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_default_to_every_target_for_30_seconds() {
        let o = parse(&[], None).unwrap();
        assert_eq!(o.seconds, 30);
        assert_eq!(o.targets, TARGETS);
        assert!(!o.merge);
    }

    #[test]
    fn seconds_come_from_the_flag_over_the_environment() {
        assert_eq!(parse(&[], Some("5")).unwrap().seconds, 5);
        assert_eq!(
            parse(&args(&["--seconds", "600"]), Some("5"))
                .unwrap()
                .seconds,
            600
        );
        assert!(parse(&[], Some("soon")).is_err());
        assert!(parse(&args(&["--seconds", "0"]), None).is_err());
        assert!(parse(&args(&["--seconds"]), None).is_err());
    }

    #[test]
    fn targets_are_checked() {
        let o = parse(&args(&["--target", "decoder_chunks", "--merge"]), None).unwrap();
        assert_eq!(o.targets, ["decoder_chunks"]);
        assert!(o.merge);
        assert!(parse(&args(&["--target", "nope"]), None).is_err());
    }

    #[test]
    fn every_target_has_seeds_and_a_manifest_entry() {
        let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
        for t in TARGETS {
            assert!(manifest.contains(&format!("name = \"{t}\"")), "{t}");
            assert!(
                !files_in(&fuzz_dir().join("seeds").join(t)).is_empty(),
                "{t}"
            );
        }
        assert_eq!(manifest.matches("[[bin]]").count(), TARGETS.len());
    }

    #[test]
    fn a_failure_is_reported_from_the_panic_on() {
        let log = "#1 INITED\n\"ab\" # Uses: 3\nnoise\nthread '<unnamed>' panicked at src/x.rs:1:1:\nboom\n==1== ERROR: libFuzzer: deadly signal\n";
        let r = report_of(log);
        assert!(r.starts_with("thread '<unnamed>' panicked at"), "{r}");
        assert!(r.contains("boom") && !r.contains("Uses"), "{r}");
    }

    #[test]
    fn summary_is_libfuzzers_done_line() {
        let log = "#1 INITED cov: 3\n#320781\tDONE   cov: 375 ft: 1630 corp: 360/35Kb\nDone 320781 runs in 11 second(s)\n";
        assert_eq!(
            summary(log),
            "320781\tDONE   cov: 375 ft: 1630 corp: 360/35Kb"
        );
    }
}
