//! `cargo xtask dist`: the browser bundle in `target/www`, without trunk.
//!
//! 1. `cargo build -p dumdum-client-wasm --target wasm32-unknown-unknown
//!    --profile wasm-release`;
//! 2. JS glue with `wasm-bindgen-cli-support` (pinned with `=` to the
//!    `wasm-bindgen` in Cargo.lock), names and producers stripped;
//! 3. `wasm-opt -Oz --converge` from the npm package `binaryen` (Debian's
//!    and the crates.io builds cannot read wasm from Rust 1.95), and the JS
//!    glue minified by the npm package `terser`; both pinned and installed
//!    on demand into `target/tools`;
//! 4. `www/` copied with `index.html` rewritten from its Trunk form to load
//!    the content-hashed JS, wasm and CSS;
//! 5. raw and gzip sizes printed and checked against the budget (200 KiB
//!    gzip for wasm + JS); `--size-report` also prints what the wasm is
//!    made of, by crate and by function ([`crate::size_report`]).
//!
//! `cargo xtask run [bridge args]` builds the bundle, then starts
//! `dumdum-bridge --www target/www` with the arguments given.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;

/// The pinned binaryen release on npm (its `wasm-opt` reads Rust 1.95 wasm).
const BINARYEN_NPM: &str = "binaryen@132.0.0";
/// The pinned terser release on npm (minifies the JS glue).
const TERSER_NPM: &str = "terser@5.46.0";
/// The page's budget: wasm + JS, gzip -9.
const BUDGET_GZIP_BYTES: usize = 200 * 1024;
/// The wasm features `wasm-opt` may assume (what Rust 1.95 emits).
pub(crate) const WASM_OPT_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-reference-types",
    "--enable-multivalue",
];
/// The stem of the generated files.
const STEM: &str = "dumdum";

/// The workspace root. `cargo xtask` (`cargo run`) sets
/// `CARGO_MANIFEST_DIR` when it starts the binary: that one wins over the
/// path compiled in, so a binary cargo took as fresh from a `target/`
/// copied from another checkout (worktree) builds this checkout, not that
/// one.
fn workspace_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn exec(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

pub(crate) fn dist(args: &[String]) -> Result<()> {
    let mut size_report = false;
    for a in args {
        match a.as_str() {
            "--size-report" => size_report = true,
            _ => bail!("dist takes only `--size-report` (got `{a}`)"),
        }
    }
    let root = workspace_root();
    let target = target_dir(&root);
    let out = target.join("www");
    let built = build_bundle(&root, &target, &out);
    // Over budget is when the report is most wanted.
    if size_report {
        crate::size_report::report(&target, &wasm_release(&target))?;
    }
    built
}

/// The cargo output `build_bundle` starts from.
fn wasm_release(target: &Path) -> PathBuf {
    target.join("wasm32-unknown-unknown/wasm-release/dumdum_client_wasm.wasm")
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let root = workspace_root();
    let target = target_dir(&root);
    let out = target.join("www");
    build_bundle(&root, &target, &out)?;
    eprintln!("starting dumdum-bridge (it prints its URL)…");
    exec(
        cargo()
            .current_dir(&root)
            .args(["run", "--release", "-p", "dumdum-bridge", "--", "--www"])
            .arg(&out)
            .args(args),
    )
}

/// Builds the whole bundle into `out`.
fn build_bundle(root: &Path, target: &Path, out: &Path) -> Result<()> {
    // A fresh machine may lack the target: the run command must not need
    // any step before it.
    crate::setup::wasm_target()?;
    eprintln!("building dumdum-client-wasm for wasm32 (profile wasm-release)…");
    // The workspace profile strips everything, including the
    // `target_features` section wasm-bindgen reads; wasm-bindgen strips the
    // names itself, so keep symbols until then.
    // Panic locations name source files: without the machine's registry
    // and checkout paths they are shorter (and the build reproducible).
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_default();
    let mut remap = vec![format!("--remap-path-prefix={}/=", root.display())];
    if let Ok(indexes) = fs::read_dir(cargo_home.join("registry").join("src")) {
        for index in indexes.flatten() {
            remap.push(format!("--remap-path-prefix={}/=", index.path().display()));
        }
    }
    exec(
        cargo()
            .current_dir(root)
            .env("CARGO_PROFILE_WASM_RELEASE_STRIP", "debuginfo")
            .env("CARGO_ENCODED_RUSTFLAGS", remap.join("\u{1f}"))
            .args([
                "build",
                "-p",
                "dumdum-client-wasm",
                "--target",
                "wasm32-unknown-unknown",
                "--profile",
                "wasm-release",
            ]),
    )
    .context(
        "building the wasm (is the target installed? `rustup target add wasm32-unknown-unknown`)",
    )?;
    let wasm_in = wasm_release(target);

    let glue_dir = target.join("dist-glue");
    if glue_dir.exists() {
        fs::remove_dir_all(&glue_dir)
            .with_context(|| format!("clearing {}", glue_dir.display()))?;
    }
    fs::create_dir_all(&glue_dir)?;
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm_in)
        .out_name(STEM)
        .web(true)?
        .typescript(false)
        .remove_name_section(true)
        .remove_producers_section(true)
        .omit_default_module_path(false)
        .generate(&glue_dir)
        .context("generating the JS glue with wasm-bindgen")?;
    let glue_wasm = glue_dir.join(format!("{STEM}_bg.wasm"));
    let glue_js = glue_dir.join(format!("{STEM}.js"));

    wasm_opt(root, target, &glue_wasm)?;
    minify_js(root, target, &glue_js)?;

    let wasm = fs::read(&glue_wasm)?;
    let js = fs::read_to_string(&glue_js)?;
    let www = root.join("www");
    let css = fs::read(www.join("styles.css")).context("reading www/styles.css")?;

    let wasm_name = format!("{STEM}-{}_bg.wasm", short_hash(&wasm));
    let js_name = format!("{STEM}-{}.js", short_hash(js.as_bytes()));
    let css_name = format!("styles-{}.css", short_hash(&css));

    let boot = boot_script(&js_name, &wasm_name);
    let boot_name = format!("boot-{}.js", short_hash(boot.as_bytes()));

    let html = fs::read_to_string(www.join("index.html")).context("reading www/index.html")?;
    let html = rewrite_index(&html, &js_name, &wasm_name, &css_name, &boot_name)?;

    if out.exists() {
        fs::remove_dir_all(out).with_context(|| format!("clearing {}", out.display()))?;
    }
    fs::create_dir_all(out)?;
    fs::write(out.join(&wasm_name), &wasm)?;
    fs::write(out.join(&js_name), &js)?;
    fs::write(out.join(&css_name), &css)?;
    fs::write(out.join(&boot_name), &boot)?;
    fs::write(out.join("index.html"), html)?;
    for entry in fs::read_dir(&www)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let skip = matches!(name.as_ref(), "index.html" | "styles.css" | "Trunk.toml")
            || !entry.file_type()?.is_file();
        if !skip {
            fs::copy(entry.path(), out.join(name.as_ref()))?;
        }
    }

    let wasm_gz = gzip_len(&wasm)?;
    let js_gz = gzip_len(js.as_bytes())?;
    let css_gz = gzip_len(&css)?;
    eprintln!("bundle in {}:", out.display());
    eprintln!(
        "  {:<28} {:>9} raw {:>9} gzip",
        wasm_name,
        wasm.len(),
        wasm_gz
    );
    eprintln!("  {:<28} {:>9} raw {:>9} gzip", js_name, js.len(), js_gz);
    eprintln!("  {:<28} {:>9} raw {:>9} gzip", css_name, css.len(), css_gz);
    let total = wasm_gz + js_gz;
    eprintln!(
        "  wasm + JS: {} bytes raw, {} bytes gzip ({:.1} KiB of the {} KiB budget)",
        wasm.len() + js.len(),
        total,
        total as f64 / 1024.0,
        BUDGET_GZIP_BYTES / 1024
    );
    if total > BUDGET_GZIP_BYTES {
        bail!("the bundle is {total} bytes gzip, over the budget of {BUDGET_GZIP_BYTES} bytes");
    }
    precompress(out)?;
    Ok(())
}

/// The page's one script element loads this (no inline script, so the
/// Content-Security-Policy can forbid them): starts the wasm and registers
/// the service worker (`sw.js`, the app shell for offline use).
fn boot_script(js: &str, wasm: &str) -> String {
    format!(
        "// Generated by `cargo xtask dist`.\n\
         import init from './{js}';\n\
         init({{ module_or_path: './{wasm}' }});\n\
         if ('serviceWorker' in navigator) {{\n\
         \x20 navigator.serviceWorker.register('./sw.js').catch((e) => console.warn('dumdum: no service worker:', e));\n\
         }}\n"
    )
}

/// Whether the bridge may send `name` compressed (the kinds it serves with
/// `Vary: Accept-Encoding`, bridge/src/headers.rs).
fn compressible(name: &str) -> bool {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    matches!(
        ext.to_ascii_lowercase().as_str(),
        "html" | "js" | "mjs" | "css" | "wasm" | "svg" | "json" | "webmanifest" | "txt"
    )
}

/// Writes `NAME.br` (brotli 11) and `NAME.gz` (gzip -9) beside every
/// compressible file of `out`, each only when smaller, for the bridge to
/// send by `Accept-Encoding`; prints the sizes.
fn precompress(out: &Path) -> Result<()> {
    let mut names: Vec<String> = fs::read_dir(out)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| compressible(n))
        .collect();
    names.sort();
    eprintln!("precompressed (for Accept-Encoding):");
    for name in names {
        let raw = fs::read(out.join(&name))?;
        let br = crate::release::brotli(&raw)?;
        let gz = crate::release::gzip(&raw)?;
        let mut kept = Vec::new();
        for (ext, bytes) in [("br", &br), ("gz", &gz)] {
            if bytes.len() < raw.len() {
                fs::write(out.join(format!("{name}.{ext}")), bytes)?;
                kept.push(format!("{} {ext}", bytes.len()));
            }
        }
        let kept = if kept.is_empty() {
            "not smaller: sent as is".to_owned()
        } else {
            kept.join(", ")
        };
        eprintln!("  {name:<34} {:>9} raw -> {kept}", raw.len());
    }
    Ok(())
}

/// `node_modules/.bin/<bin>` under `target/tools`, installing `package`
/// (pinned) from npm the first time; `None`, with a warning saying what is
/// lost, when npm is not installed.
fn npm_tool(root: &Path, target: &Path, package: &str, bin: &str) -> Result<Option<PathBuf>> {
    let tools = target.join("tools");
    let path = tools.join("node_modules/.bin").join(bin);
    if path.exists() {
        return Ok(Some(path));
    }
    let have_npm = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_npm {
        eprintln!(
            "warning: npm is not installed, so {bin} is skipped (the bundle works, but is larger). Install Node.js/npm to get `{package}`."
        );
        return Ok(None);
    }
    eprintln!("installing {package} into {} (once)…", tools.display());
    fs::create_dir_all(&tools)?;
    exec(
        Command::new("npm")
            .current_dir(root)
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&tools)
            .arg(package),
    )
    .with_context(|| format!("installing {package} from npm"))?;
    Ok(Some(path))
}

/// Runs `wasm-opt -Oz --converge` in place (`--converge`: passes again
/// until the size stops falling). The module's memory is its own
/// (exported, not imported), so it starts zero-filled, and Rust places
/// nothing below address 1024 (the stack comes first):
/// `--zero-filled-memory --low-memory-unused` let wasm-opt drop zero data
/// and fold addresses (about 1 KB gzip).
fn wasm_opt(root: &Path, target: &Path, wasm: &Path) -> Result<()> {
    let Some(bin) = npm_tool(root, target, BINARYEN_NPM, "wasm-opt")? else {
        return Ok(());
    };
    let optimized = wasm.with_extension("opt.wasm");
    exec(
        Command::new(&bin)
            .args([
                "-Oz",
                "--converge",
                "--zero-filled-memory",
                "--low-memory-unused",
            ])
            .args(WASM_OPT_FEATURES)
            .arg(wasm)
            .arg("-o")
            .arg(&optimized),
    )
    .context("running wasm-opt -Oz")?;
    fs::rename(&optimized, wasm)?;
    Ok(())
}

/// Minifies the JS glue in place with terser (an ES module: its exports
/// stay): about a quarter of its gzip size.
fn minify_js(root: &Path, target: &Path, js: &Path) -> Result<()> {
    let Some(bin) = npm_tool(root, target, TERSER_NPM, "terser")? else {
        return Ok(());
    };
    let minified = js.with_extension("min.js");
    exec(
        Command::new(&bin)
            .arg(js)
            .args(["--module", "--compress", "--mangle", "-o"])
            .arg(&minified),
    )
    .context("minifying the JS glue with terser")?;
    fs::rename(&minified, js)?;
    Ok(())
}

/// Replaces the Trunk directives (`<link data-trunk ...>`) of `index.html`
/// with the built files.
fn rewrite_index(html: &str, js: &str, wasm: &str, css: &str, boot: &str) -> Result<String> {
    let mut out = String::with_capacity(html.len() + 512);
    let (mut saw_rust, mut saw_css) = (false, false);
    for line in html.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if !trimmed.contains("data-trunk") {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if trimmed.contains(r#"rel="rust""#) {
            saw_rust = true;
            out.push_str(&format!(
                "{indent}<link rel=\"modulepreload\" href=\"./{js}\">\n\
                 {indent}<link rel=\"preload\" href=\"./{wasm}\" as=\"fetch\" type=\"application/wasm\" crossorigin>\n\
                 {indent}<script type=\"module\" src=\"./{boot}\"></script>\n"
            ));
        } else if trimmed.contains(r#"rel="css""#) {
            saw_css = true;
            out.push_str(&format!(
                "{indent}<link rel=\"stylesheet\" href=\"./{css}\">\n"
            ));
        } else if trimmed.contains(r#"rel="icon""#) {
            out.push_str(&format!(
                "{indent}<link rel=\"icon\" href=\"./icon.svg\" type=\"image/svg+xml\">\n"
            ));
        } else if trimmed.contains(r#"rel="copy-file""#) {
            // Copied with the rest of www/.
        } else {
            bail!("index.html: unknown Trunk directive: {trimmed}");
        }
    }
    if !saw_rust || !saw_css {
        bail!("index.html must have the Trunk `rust` and `css` links");
    }
    Ok(out)
}

/// The first 16 hex digits of the SHA-256 of `bytes`, for cache-busting
/// file names.
fn short_hash(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn gzip_len(bytes: &[u8]) -> Result<usize> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(bytes)?;
    Ok(enc.finish()?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_rewritten_from_its_trunk_form() {
        let html = "<head>\n  <link data-trunk rel=\"rust\" href=\"../client-wasm/Cargo.toml\" />\n  <link data-trunk rel=\"css\" href=\"styles.css\" />\n  <link data-trunk rel=\"icon\" href=\"icon.svg\" />\n</head>\n";
        let out = rewrite_index(html, "a.js", "a_bg.wasm", "s.css", "b.js").unwrap();
        assert!(!out.contains("data-trunk"));
        assert!(out.contains("<script type=\"module\" src=\"./b.js\"></script>"));
        assert!(
            !out.contains("<script type=\"module\">"),
            "no inline script"
        );
        assert!(out.contains("<link rel=\"stylesheet\" href=\"./s.css\">"));
        assert!(out.contains("href=\"./icon.svg\""));
        assert!(rewrite_index("<head></head>", "a", "b", "c", "d").is_err());
        assert!(rewrite_index("<link data-trunk rel=\"sass\">", "a", "b", "c", "d").is_err());
    }

    #[test]
    fn boot_script_starts_the_wasm_and_registers_the_worker() {
        let b = boot_script("a.js", "a_bg.wasm");
        assert!(b.contains("import init from './a.js';"));
        assert!(b.contains("init({ module_or_path: './a_bg.wasm' });"));
        assert!(b.contains("navigator.serviceWorker.register('./sw.js')"));
        assert!(compressible("x.webmanifest") && compressible("a_bg.wasm"));
        assert!(!compressible("icon-192.png") && !compressible("a.js.br"));
    }

    #[test]
    fn hashes_change_with_content() {
        assert_eq!(short_hash(b"x").len(), 16);
        assert_ne!(short_hash(b"x"), short_hash(b"y"));
    }
}
