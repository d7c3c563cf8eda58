//! `gen-corpus`: writes a large corpus of distinct self-signed CA certificates for benchmarks.
//!
//! ```text
//! gen-corpus --count N --out DIR [--seed S]
//! ```
//!
//! Writes `DIR/ca-00000.crt` … `DIR/ca-{N-1}.crt`, one PEM certificate each. File names, subjects,
//! serial numbers and validity are a pure function of the index and the seed; the key pairs (and
//! so the bytes) are fresh on every run.
//!
//! Speed over realism: every certificate shares one P-256 key pair (the bundle builder keys on the
//! whole certificate, not the key), except that every 500th certificate repeats the previous
//! subject under a second key pair, like a re-keyed CA. A sprinkling of awkward subjects exercises
//! OpenSSL's name canonicalisation: mixed case, runs of spaces, non-ASCII, and case/space variants
//! of a neighbour's name that collide on the subject hash.

// A command-line tool: it reports progress and errors on stderr.
#![allow(clippy::print_stderr)]

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use time::macros::datetime;

const USAGE: &str = "usage: gen-corpus --count N --out DIR [--seed S]";

/// What was typed, validated.
struct Settings {
    count: u32,
    out: PathBuf,
    seed: u64,
}

fn parse_args() -> Result<Settings, String> {
    let mut count = None;
    let mut out = None;
    let mut seed = 1;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = || -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args
                    .next()
                    .map(|v| v.to_string_lossy().into_owned())
                    .ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "--count" | "-n" => {
                let v = value()?;
                count = Some(v.parse().map_err(|e| format!("--count {v}: {e}"))?);
            }
            "--out" | "-o" => out = Some(PathBuf::from(value()?)),
            "--seed" => {
                let v = value()?;
                seed = v.parse().map_err(|e| format!("--seed {v}: {e}"))?;
            }
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Settings {
        count: count.ok_or("--count is required")?,
        out: out.ok_or("--out is required")?,
        seed,
    })
}

/// The common name of certificate `i`, with the awkward cases mixed in.
fn common_name(i: u32) -> String {
    let plain = |i: u32| format!("Anchorage Bench CA {i:05}");
    match i {
        // Every 500th: exactly the previous certificate's subject (the caller switches keys).
        i if i % 500 == 499 => plain(i - 1),
        // Canonically equal to the previous name (OpenSSL lowercases and collapses spaces), so the
        // two share a subject hash and need `.0` / `.1` in a hashed directory.
        i if i % 250 == 123 => format!("  aNCHORAGE   bENCH  ca {:05} ", i - 1),
        i if i % 100 == 37 => format!("AnChOrAgE bEnCh Ca {i:05}"),
        i if i % 100 == 61 => format!("  Anchorage   Bench\tCA  {i:05}  "),
        i if i % 100 == 83 => format!("Anchorage Bänch CA {i:05} — Zürich 東京 Ωμέγα"),
        i => plain(i),
    }
}

fn params(i: u32, seed: u64) -> CertificateParams {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "ZZ");
    dn.push(
        DnType::OrganizationName,
        format!("Anchorage Bench Corpus {seed}"),
    );
    dn.push(DnType::CommonName, common_name(i));

    // 16 bytes: seed then index; the top bit is clear so the INTEGER stays positive.
    let mut serial = Vec::with_capacity(16);
    serial.extend_from_slice(&(seed & 0x7fff_ffff_ffff_ffff).to_be_bytes());
    serial.extend_from_slice(&(u64::from(i) + 1).to_be_bytes());

    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.serial_number = Some(SerialNumber::from(serial));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = datetime!(2025-01-01 00:00 UTC);
    params.not_after = datetime!(2045-01-01 00:00 UTC);
    params
}

fn run(settings: &Settings) -> Result<(), String> {
    let out = &settings.out;
    std::fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let not_empty = std::fs::read_dir(out)
        .map_err(|e| format!("read {}: {e}", out.display()))?
        .next()
        .is_some();
    if not_empty {
        // Left-over files from a bigger corpus would silently change the benchmark.
        return Err(format!("{} is not empty", out.display()));
    }

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let rekey = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;

    let started = Instant::now();
    for i in 0..settings.count {
        let signing_key = if i % 500 == 499 { &rekey } else { &key };
        let cert = params(i, settings.seed)
            .self_signed(signing_key)
            .map_err(|e| format!("certificate {i}: {e}"))?;
        let path = out.join(format!("ca-{i:05}.crt"));
        // A scratch corpus, not an Anchorage output: no atomic swap needed.
        let mut file = BufWriter::new(
            File::create(&path).map_err(|e| format!("create {}: {e}", path.display()))?,
        );
        file.write_all(cert.pem().as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        if (i + 1) % 1000 == 0 {
            eprintln!("gen-corpus: {} / {}", i + 1, settings.count);
        }
    }
    eprintln!(
        "gen-corpus: wrote {} certificates to {} in {:.2?}",
        settings.count,
        out.display(),
        started.elapsed()
    );
    Ok(())
}

fn main() -> ExitCode {
    let settings = match parse_args() {
        Ok(settings) => settings,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("gen-corpus: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gen-corpus: {message}");
            ExitCode::FAILURE
        }
    }
}
