//! `cargo xtask dist --size-report`: what the page's wasm is made of.
//!
//! The shipped wasm has no names, so this builds a second copy of it the
//! same way (wasm-bindgen, `wasm-opt -Oz`) but keeping the name section
//! (`wasm-opt -g`), then ranks the code by crate (the first path of each
//! function's demangled name; for `<f64 as core::fmt::Display>::fmt`, the
//! trait's crate) and by function. Sizes are raw bytes of function bodies;
//! the data section (strings, tables) is shown apart.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Crates and functions shown.
const TOP_CRATES: usize = 15;
const TOP_FUNCTIONS: usize = 20;

/// Builds the named copy of `wasm_in` (the cargo output) under `target`
/// and prints the report.
pub(crate) fn report(target: &Path, wasm_in: &Path) -> Result<()> {
    let dir = target.join("size-report");
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    fs::create_dir_all(&dir)?;
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(wasm_in)
        .out_name("named")
        .web(true)?
        .typescript(false)
        .remove_name_section(false)
        .remove_producers_section(true)
        .generate(&dir)
        .context("generating the named copy with wasm-bindgen")?;
    let named = dir.join("named_bg.wasm");
    let bin = target.join("tools/node_modules/.bin/wasm-opt");
    if bin.exists() {
        let opt = dir.join("named.opt.wasm");
        let status = Command::new(&bin)
            .args(["-Oz", "-g"])
            .args(crate::dist::WASM_OPT_FEATURES)
            .arg(&named)
            .arg("-o")
            .arg(&opt)
            .status()
            .context("running wasm-opt -g")?;
        if !status.success() {
            bail!("wasm-opt -Oz -g failed with {status}");
        }
        fs::rename(&opt, &named)?;
    } else {
        eprintln!("(wasm-opt missing: sizes before wasm-opt)");
    }
    let bytes = fs::read(&named)?;
    let module = parse(&bytes)?;
    print!("{}", render(&module));
    Ok(())
}

/// What the report needs of a module.
#[derive(Debug, Default)]
struct Module {
    /// (body size, name) of each defined function.
    functions: Vec<(usize, String)>,
    /// Bytes of the data section.
    data: usize,
    /// Bytes of the other sections, name section excluded.
    other: usize,
}

fn leb(b: &[u8], i: &mut usize) -> Result<usize> {
    let mut n: u64 = 0;
    let mut shift = 0;
    loop {
        let byte = *b.get(*i).context("truncated wasm")?;
        *i += 1;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return usize::try_from(n).context("LEB128 too large");
        }
        shift += 7;
        if shift > 63 {
            bail!("LEB128 too long");
        }
    }
}

fn name_str(b: &[u8], i: &mut usize) -> Result<String> {
    let len = leb(b, i)?;
    let s = b.get(*i..*i + len).context("truncated name")?;
    *i += len;
    Ok(String::from_utf8_lossy(s).into_owned())
}

/// Reads the import count, the code bodies and the function names.
fn parse(b: &[u8]) -> Result<Module> {
    if b.get(..8) != Some(b"\0asm\x01\0\0\0".as_slice()) {
        bail!("not a wasm module");
    }
    let mut m = Module::default();
    let mut imported_functions = 0;
    let mut bodies = Vec::new();
    let mut names: HashMap<usize, String> = HashMap::new();
    let mut i = 8;
    while i < b.len() {
        let id = b[i];
        i += 1;
        let size = leb(b, &mut i)?;
        let end = i + size;
        let body = b.get(i..end).context("truncated section")?;
        let mut j = 0;
        match id {
            2 => {
                for _ in 0..leb(body, &mut j)? {
                    name_str(body, &mut j)?;
                    name_str(body, &mut j)?;
                    let kind = *body.get(j).context("truncated import")?;
                    j += 1;
                    match kind {
                        0 => {
                            leb(body, &mut j)?;
                            imported_functions += 1;
                        }
                        1 => {
                            j += 1;
                            let flags = leb(body, &mut j)?;
                            leb(body, &mut j)?;
                            if flags & 1 == 1 {
                                leb(body, &mut j)?;
                            }
                        }
                        2 => {
                            let flags = leb(body, &mut j)?;
                            leb(body, &mut j)?;
                            if flags & 1 == 1 {
                                leb(body, &mut j)?;
                            }
                        }
                        3 => j += 2,
                        4 => {
                            j += 1;
                            leb(body, &mut j)?;
                        }
                        k => bail!("unknown import kind {k}"),
                    }
                }
                m.other += size;
            }
            10 => {
                for _ in 0..leb(body, &mut j)? {
                    let start = j;
                    let len = leb(body, &mut j)?;
                    j += len;
                    bodies.push(j - start);
                }
                m.other += size - bodies.iter().sum::<usize>();
            }
            11 => m.data += size,
            0 => {
                let custom = name_str(body, &mut j)?;
                if custom == "name" {
                    while j < body.len() {
                        let sub = body[j];
                        j += 1;
                        let len = leb(body, &mut j)?;
                        let next = j + len;
                        if sub == 1 {
                            for _ in 0..leb(body, &mut j)? {
                                let idx = leb(body, &mut j)?;
                                names.insert(idx, name_str(body, &mut j)?);
                            }
                        }
                        j = next;
                    }
                } else {
                    m.other += size;
                }
            }
            _ => m.other += size,
        }
        i = end;
    }
    m.functions = bodies
        .into_iter()
        .enumerate()
        .map(|(k, len)| {
            let name = names
                .remove(&(imported_functions + k))
                .unwrap_or_else(|| format!("(function {})", imported_functions + k));
            (len, name)
        })
        .collect();
    Ok(m)
}

/// The crate a demangled function name belongs to.
fn crate_of(name: &str) -> String {
    let first_path = |s: &str| -> String {
        let s = s.trim_start_matches(['<', '&', '*', ' ', '(']);
        let s = s
            .trim_start_matches("mut ")
            .trim_start_matches("const ")
            .trim_start_matches("dyn ")
            .trim_start_matches("impl ");
        s.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("")
            .to_owned()
    };
    if name.starts_with("__wbg") || name.starts_with("__wbindgen") {
        return "wasm_bindgen (glue)".into();
    }
    if name.starts_with('(') {
        return "(no name)".into();
    }
    let mut krate = first_path(name);
    // `<f64 as core::fmt::Display>::fmt`, `<T as ...>`: a type without a
    // path; the trait names the crate.
    if name.starts_with('<') {
        let ty_has_path = name
            .trim_start_matches(['<', '&'])
            .split(" as ")
            .next()
            .is_some_and(|t| t.contains("::"));
        if let (false, Some((_, tr))) = (ty_has_path, name.split_once(" as ")) {
            krate = first_path(tr);
        }
    }
    if krate.is_empty() {
        "(other)".into()
    } else {
        krate
    }
}

fn render(m: &Module) -> String {
    use std::fmt::Write as _;
    let code: usize = m.functions.iter().map(|(n, _)| n).sum();
    let mut out = String::new();
    let pct = |n: usize| 100.0 * n as f64 / code.max(1) as f64;
    let _ = writeln!(
        out,
        "size report (raw bytes of the wasm after wasm-opt, names from a named copy):\n  code {code} in {} functions, data {}, other sections {}",
        m.functions.len(),
        m.data,
        m.other
    );
    let mut by_crate: HashMap<String, (usize, usize)> = HashMap::new();
    for (len, name) in &m.functions {
        let e = by_crate.entry(crate_of(name)).or_default();
        e.0 += len;
        e.1 += 1;
    }
    let mut crates: Vec<_> = by_crate.into_iter().collect();
    crates.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
    let _ = writeln!(out, "  code by crate (top {TOP_CRATES}):");
    for (name, (len, count)) in crates.iter().take(TOP_CRATES) {
        let _ = writeln!(
            out,
            "    {len:>8} {:>5.1}%  {name} ({count} functions)",
            pct(*len)
        );
    }
    let mut functions: Vec<&(usize, String)> = m.functions.iter().collect();
    functions.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let _ = writeln!(out, "  largest functions (top {TOP_FUNCTIONS}):");
    for (len, name) in functions.into_iter().take(TOP_FUNCTIONS) {
        let shown: String = name.chars().take(150).collect();
        let _ = writeln!(out, "    {len:>8} {:>5.1}%  {shown}", pct(*len));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crates_are_named_by_path_or_trait() {
        assert_eq!(crate_of("yew::scheduler::push::h12"), "yew");
        assert_eq!(
            crate_of("<yew::html::CompStateInner<COMP> as yew::html::Stateful>::view::h1"),
            "yew"
        );
        assert_eq!(
            crate_of("<f64 as core[c5930c85a12de822]::fmt::Display>::fmt"),
            "core"
        );
        assert_eq!(
            crate_of("<&mut serde_json::de::D<R> as serde_core::de::X>::f"),
            "serde_json"
        );
        assert_eq!(crate_of("core::ptr::drop_in_place<yew::X>::h1"), "core");
        assert_eq!(crate_of("__wbg_set_1234"), "wasm_bindgen (glue)");
        assert_eq!(crate_of("(function 7)"), "(no name)");
    }

    /// A hand-made module: one imported function, two bodies (3 and 5
    /// bytes with their length prefixes), names for both, a data section.
    #[test]
    fn a_module_is_read_and_ranked() {
        let mut b = b"\0asm\x01\0\0\0".to_vec();
        // Import section: one function import "m"."f" of type 0.
        b.extend([2, 7, 1, 1, b'm', 1, b'f', 0, 0]);
        // Code section: two bodies.
        b.extend([10, 9, 2, 2, 0, 0x0b, 4, 0, 1, 1, 0x0b]);
        // Data section of 4 bytes.
        b.extend([11, 4, 0, 0, 0, 0]);
        // Name section: function names 1 and 2.
        let mut sub = vec![2];
        for (idx, name) in [(1u8, "x::small"), (2, "<u8 as y::T>::big")] {
            sub.push(idx);
            sub.push(name.len() as u8);
            sub.extend(name.as_bytes());
        }
        let mut custom = vec![4];
        custom.extend(b"name");
        custom.push(1);
        custom.push(sub.len() as u8);
        custom.extend(&sub);
        b.push(0);
        b.push(custom.len() as u8);
        b.extend(&custom);
        let m = parse(&b).unwrap();
        assert_eq!(
            m.functions,
            [
                (3, "x::small".to_owned()),
                (5, "<u8 as y::T>::big".to_owned())
            ]
        );
        assert_eq!(m.data, 4);
        let text = render(&m);
        assert!(text.contains("code 8 in 2 functions"), "{text}");
        let y = text.find("  y (1 functions)").unwrap();
        let x = text.find("  x (1 functions)").unwrap();
        assert!(y < x, "larger first: {text}");
        assert!(parse(b"nope").is_err());
        assert!(parse(&b[..b.len() - 3]).is_err());
    }
}
