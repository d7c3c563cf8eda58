//! Fail-safe inputs and outputs, shared by every command:
//!
//! - a path named on the command line must exist and be readable, checked before anything is
//!   read or written ([`check_input`], exit 3); entries inside a directory may still be skipped
//!   with a warning by the loader;
//! - `-` is standard input wherever a file is read ([`source`], [`read_input`]), named `stdin` in
//!   messages, and read at most once ([`MAX_STDIN_BYTES`] at most);
//! - outputs that resolve to the same file (through symbolic or hard links, or one inside an
//!   output directory), or to an input, are refused before anything is written
//!   ([`check_outputs`], exit 2);
//! - stdout carries exactly one JSON document with `--output json`, with a `"schema"` field
//!   ([`print_json`], [`JSON_SCHEMA`]); a failure that printed none prints one in `main`
//!   ([`crate::render::print_failure_json`]);
//! - a stdout that cannot be written (full, closed) is exit 5 ([`write_stdout`]).

use std::io::{Read as _, Write as _};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use zeroize::Zeroizing;

use anchorage_trust::Source;
use serde::Serialize;

use crate::exit::{Code, Failure};

/// The version of every JSON document's shape (its `"schema"` field). Raised when a field is
/// renamed or removed or changes type; adding a field keeps it (see docs/cli.md).
pub(crate) const JSON_SCHEMA: u32 = 1;

/// The most standard input read for `-` (256 MiB): far above any trust bundle or CA file, and
/// a bound on what an endless pipe (`yes | anchorage …`) can make us hold.
pub(crate) const MAX_STDIN_BYTES: u64 = 256 * 1024 * 1024;

/// The name `-` is given in messages and origins.
pub(crate) const STDIN_NAME: &str = "stdin";

/// Set once a JSON document went to stdout, so `main` does not print a second one.
static JSON_PRINTED: AtomicBool = AtomicBool::new(false);

/// Set once standard input was read: a second `-` would read nothing.
static STDIN_TAKEN: AtomicBool = AtomicBool::new(false);

/// True for the path `-` (standard input).
pub(crate) fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// How messages name a path: `stdin` for `-`.
pub(crate) fn display(path: &Path) -> String {
    if is_stdin(path) {
        STDIN_NAME.to_owned()
    } else {
        path.display().to_string()
    }
}

/// Checks that a path named on the command line (`option`, e.g. `--ca` or `SOURCE`) exists and
/// can be read: a file opened, a directory listed. `-` is standard input and always passes. Bad
/// input (exit 3) otherwise, naming the option and the path.
pub(crate) fn check_input(option: &str, path: &Path) -> Result<(), Failure> {
    if is_stdin(path) {
        return Ok(());
    }
    let fail = |what: String| {
        Failure::new(
            Code::BadInput,
            format!("{option} {}: {what}; nothing was written", path.display()),
        )
    };
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => fail("does not exist".to_owned()),
        _ => fail(format!("cannot be read ({e})")),
    })?;
    if meta.is_dir() {
        std::fs::read_dir(path).map_err(|e| fail(format!("cannot list the directory ({e})")))?;
    } else {
        std::fs::File::open(path).map_err(|e| fail(format!("cannot be read ({e})")))?;
    }
    Ok(())
}

/// [`check_input`] for each path, and at most one `-` among them.
pub(crate) fn check_inputs<'a>(
    inputs: impl IntoIterator<Item = (&'a str, &'a Path)>,
) -> Result<(), Failure> {
    let mut stdin = None;
    for (option, path) in inputs {
        if is_stdin(path) {
            if let Some(first) = stdin {
                return Err(Failure::new(
                    Code::Usage,
                    format!(
                        "standard input (-) is named twice ({first} and {option}): it can be read only once"
                    ),
                ));
            }
            stdin = Some(option);
        }
        check_input(option, path)?;
    }
    Ok(())
}

/// Reads all of standard input, at most [`MAX_STDIN_BYTES`], once per process. The buffer is
/// wiped when dropped, and every smaller one it grew from too (a CA key may come this way).
pub(crate) fn read_stdin(option: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    if STDIN_TAKEN.swap(true, Ordering::SeqCst) {
        return Err(Failure::new(
            Code::Usage,
            format!("{option} -: standard input was already read: it can be named only once"),
        ));
    }
    let failed = |e: std::io::Error| {
        Failure::new(
            Code::BadInput,
            format!("{option} {STDIN_NAME}: cannot be read ({e})"),
        )
    };
    let mut bytes = Zeroizing::new(Vec::with_capacity(64 * 1024));
    let mut chunk = Zeroizing::new([0u8; 16 * 1024]);
    let mut stdin = std::io::stdin().lock();
    loop {
        let n = match stdin.read(&mut chunk[..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed(e)),
        };
        if (bytes.len() + n) as u64 > MAX_STDIN_BYTES {
            return Err(Failure::new(
                Code::BadInput,
                format!(
                    "{option} {STDIN_NAME}: more than {MAX_STDIN_BYTES} bytes (MAX_STDIN_BYTES, docs/limits.md); write it to a file and name the file"
                ),
            ));
        }
        if bytes.len() + n > bytes.capacity() {
            // Grow by hand: the old buffer is wiped as it is dropped, never freed as it is.
            let mut grown = Zeroizing::new(Vec::with_capacity((bytes.len() + n) * 2));
            grown.extend_from_slice(&bytes);
            bytes = grown;
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    Ok(bytes)
}

/// Reads a named file, or standard input for `-`: exit 3 naming the option and the path when it
/// cannot be read. The bytes are wiped when dropped.
pub(crate) fn read_input(option: &str, path: &Path) -> Result<Zeroizing<Vec<u8>>, Failure> {
    if is_stdin(path) {
        return read_stdin(option);
    }
    std::fs::read(path).map(Zeroizing::new).map_err(|e| {
        let what = match e.kind() {
            std::io::ErrorKind::NotFound => "does not exist".to_owned(),
            _ => format!("cannot be read ({e})"),
        };
        Failure::new(
            Code::BadInput,
            format!("{option} {}: {what}", path.display()),
        )
    })
}

/// The certificate source a path names: standard input (read now) for `-`, else the path.
pub(crate) fn source(option: &str, path: &Path) -> Result<Source, Failure> {
    if is_stdin(path) {
        Ok(Source::Bytes {
            name: STDIN_NAME.to_owned(),
            bytes: std::mem::take(&mut *read_stdin(option)?),
        })
    } else {
        Ok(Source::Path(path.to_path_buf()))
    }
}

/// An output a command is about to write.
pub(crate) struct Output<'a> {
    /// The option naming it (`--pem`).
    pub(crate) option: &'a str,
    pub(crate) path: &'a Path,
    /// A directory replaced as a whole: nothing else may be written inside it.
    pub(crate) dir: bool,
}

/// Where a path leads: symbolic links of the path and of its parent resolved, and the file's
/// identity (device, inode) when it exists, so hard links compare equal too.
#[derive(Debug)]
struct Resolved {
    path: PathBuf,
    id: Option<(u64, u64)>,
}

/// How many dangling symbolic links are followed by hand before giving up (as the kernel's 40).
const MAX_LINKS: usize = 40;

fn resolve(path: &Path) -> Resolved {
    use std::os::unix::fs::MetadataExt as _;
    let id = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let mut absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // A link to a file not written yet: where the write will land is the link's target.
    for _ in 0..MAX_LINKS {
        let is_link = std::fs::symlink_metadata(&absolute).is_ok_and(|m| m.is_symlink());
        match (is_link, std::fs::read_link(&absolute)) {
            (true, Ok(target)) if std::fs::metadata(&absolute).is_err() => {
                let parent = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
                absolute = std::path::absolute(parent.join(target)).unwrap_or_default();
            }
            _ => break,
        }
    }
    let resolved = std::fs::canonicalize(&absolute).unwrap_or_else(|_| {
        // Not there yet: resolve the closest existing ancestor and keep the rest as typed.
        let mut rest = Vec::new();
        let mut base = absolute.as_path();
        loop {
            if let Ok(real) = std::fs::canonicalize(base) {
                break rest
                    .iter()
                    .rev()
                    .fold(real, |acc: PathBuf, part| acc.join(part));
            }
            match (base.parent(), base.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_owned());
                    base = parent;
                }
                _ => break absolute.clone(),
            }
        }
    });
    Resolved { path: resolved, id }
}

fn same(a: &Resolved, b: &Resolved) -> bool {
    a.path == b.path || matches!((a.id, b.id), (Some(x), Some(y)) if x == y)
}

/// Refuses (exit 2), before anything is written, outputs that resolve to the same file — the
/// second would silently replace the first — an output inside another output directory (the
/// directory's swap would drop it), and an output that is one of the inputs (or holds one).
pub(crate) fn check_outputs<'a>(
    outputs: &[Output<'a>],
    inputs: impl IntoIterator<Item = (&'a str, &'a Path)>,
) -> Result<(), Failure> {
    let resolved: Vec<Resolved> = outputs.iter().map(|o| resolve(o.path)).collect();
    for (i, (a, ra)) in outputs.iter().zip(&resolved).enumerate() {
        for (b, rb) in outputs.iter().zip(&resolved).skip(i + 1) {
            if same(ra, rb) {
                return Err(Failure::new(
                    Code::Usage,
                    format!(
                        "{} {} and {} {} are the same file: the second would replace the first; give each output its own path (nothing was written)",
                        a.option,
                        a.path.display(),
                        b.option,
                        b.path.display()
                    ),
                ));
            }
            for (outer, inner, ro, ri) in [(a, b, ra, rb), (b, a, rb, ra)] {
                if outer.dir && ri.path.starts_with(&ro.path) {
                    return Err(Failure::new(
                        Code::Usage,
                        format!(
                            "{} {} is inside {} {}, which is replaced as a whole: write it elsewhere (nothing was written)",
                            inner.option,
                            inner.path.display(),
                            outer.option,
                            outer.path.display()
                        ),
                    ));
                }
            }
        }
    }
    for (option, path) in inputs {
        if is_stdin(path) {
            continue;
        }
        let input = resolve(path);
        for (o, ro) in outputs.iter().zip(&resolved) {
            let inside = o.dir && input.path.starts_with(&ro.path);
            if same(&input, ro) || inside {
                return Err(Failure::new(
                    Code::Usage,
                    format!(
                        "{} {} would overwrite the input {option} {}: write to another path, then move it over the input (nothing was written)",
                        o.option,
                        o.path.display(),
                        path.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Writes to stdout for `out!`/`outln!`. A stdout that cannot be written (a full disk, a closed
/// pipe, a closed descriptor) ends the process with exit 5: a truncated output must not look
/// like a success.
pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        stdout_failed(&e);
    }
}

/// Writes bytes to stdout (a binary secret value): [`Code::Output`] when it cannot.
pub(crate) fn write_stdout_bytes(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::new(Code::Output, format!("cannot write to stdout: {e}")))
}

fn stdout_failed(e: &std::io::Error) -> ! {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("anchorage: error: cannot write to stdout: {e}");
    }
    std::process::exit(i32::from(Code::Output as u8));
}

/// A document as printed: `"schema"` first, then the value's own fields in their order.
#[derive(Serialize)]
struct Document<'a, T: Serialize> {
    schema: u32,
    #[serde(flatten)]
    value: &'a T,
}

/// A value that is not an object (never printed today), under `"value"`.
#[derive(Serialize)]
struct Wrapped<'a, T: Serialize> {
    schema: u32,
    value: &'a T,
}

/// The text of the JSON document `value` is, with `"schema": JSON_SCHEMA` first (a value that
/// is not an object is put under `"value"`).
pub(crate) fn json_document<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let is_object = serde_json::to_value(value)?.is_object();
    if is_object {
        serde_json::to_string_pretty(&Document {
            schema: JSON_SCHEMA,
            value,
        })
    } else {
        serde_json::to_string_pretty(&Wrapped {
            schema: JSON_SCHEMA,
            value,
        })
    }
}

/// Prints `value` as the one JSON document of stdout, with its `"schema"` field.
pub(crate) fn print_json<T: Serialize>(value: &T) {
    match json_document(value) {
        Ok(s) => {
            JSON_PRINTED.store(true, Ordering::SeqCst);
            write_stdout(format_args!("{s}\n"));
        }
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("anchorage: error: cannot render JSON: {e}");
            }
        }
    }
}

/// True once a JSON document went to stdout.
pub(crate) fn json_printed() -> bool {
    JSON_PRINTED.load(Ordering::SeqCst)
}

/// A store's version string as JSON: a number when it is one (every store numbers its
/// versions), the string otherwise.
pub(crate) fn version_json(version: &str) -> serde_json::Value {
    version
        .parse::<u64>()
        .map_or_else(|_| version.into(), serde_json::Value::from)
}

/// Reads the certificate file or directory an option names (`--bundle`, `--extra`, `--ca`) into a
/// bundle, with the default policy. Errors name the option: a key is exit 4 even when nothing
/// else loaded, and "no usable certificates" gives the first problem, which says more.
pub(crate) fn read_option_bundle(
    path: &Path,
    option: &str,
) -> Result<anchorage_trust::Bundle, Failure> {
    check_input(option, path)?;
    let source = self::source(option, path)?;
    let loaded = anchorage_trust::load(&[source], &anchorage_trust::LoadOptions::default());
    let first_problem = loaded.problems.first().map(ToString::to_string);
    // The policy first: a private key is refused (exit 4) even when nothing else loaded.
    let (bundle, _report) = anchorage_trust::Policy::default()
        .apply(loaded)
        .map_err(|e| {
            let no_certificates = matches!(e, anchorage_trust::TrustError::NoCertificates { .. });
            let mut f = Failure::from(e);
            f.message = match (&first_problem, no_certificates) {
                // The problem names the file already; it says more than "no usable certificates".
                (Some(problem), true) => format!("{option}: {problem}"),
                _ => format!("{option} {}: {}", display(path), f.message),
            };
            f
        })?;
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_carries_the_schema_first() {
        #[derive(Serialize)]
        struct Two {
            zebra: u8,
            apple: u8,
        }
        let text = json_document(&Two { zebra: 1, apple: 2 }).unwrap();
        // The schema first, then the fields in their declared order.
        let at = |k: &str| text.find(k).unwrap();
        assert!(
            at("schema") < at("zebra") && at("zebra") < at("apple"),
            "{text}"
        );
        let d: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(d["schema"], JSON_SCHEMA);
        let d: serde_json::Value = serde_json::from_str(&json_document(&[1, 2]).unwrap()).unwrap();
        assert_eq!(d["schema"], JSON_SCHEMA);
        assert_eq!(d["value"], serde_json::json!([1, 2]));
    }

    #[test]
    fn versions_are_numbers_when_they_are_numbers() {
        assert_eq!(version_json("3"), serde_json::json!(3));
        assert_eq!(version_json("v3"), serde_json::json!("v3"));
    }

    #[test]
    fn outputs_through_a_symlink_collide_and_distinct_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.pem");
        let link = dir.path().join("link.pem");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let out = |option, path| Output {
            option,
            path,
            dir: false,
        };
        let err = check_outputs(&[out("--pem", &a), out("--extra-pem", &link)], [])
            .err()
            .unwrap();
        assert_eq!(err.code, Code::Usage);
        let b = dir.path().join("sub/../b.pem");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        check_outputs(&[out("--pem", &a), out("--extra-pem", &b)], []).unwrap();
    }
}
