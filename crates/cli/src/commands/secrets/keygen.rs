//! `anchorage secrets keygen`: a new transit or encryption xkey seed, an admin user nkey seed, or
//! a component (M…) or account (A…) nkey seed, written 0600 to one file; only the public key is
//! printed.

use anchorage_secrets::XKey;
use anchorage_secrets::admin::AdminSigner;
use anchorage_trust::atomic::write_private_file;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use zeroize::Zeroizing;

use super::args::{KeyKind, KeygenArgs};
use crate::exit::{Code, Failure};
use crate::options::OutputFormat;
use crate::render::print_json;

#[derive(Serialize)]
struct Generated<'a> {
    kind: &'static str,
    public_key: &'a str,
    path: String,
}

/// Generates the key, writes its seed atomically (0600 from the moment the file exists) and
/// prints the public key. An existing file is kept unless `--force`: overwriting a transit or
/// encryption seed by accident loses the key hosts cache or values are sealed with.
pub(super) fn keygen(args: &KeygenArgs) -> Result<Code, Failure> {
    if !args.force && args.out.exists() {
        return Err(Failure::new(
            Code::Output,
            format!(
                "{} exists; it may hold a key in use (pass --force to replace it)",
                args.out.display()
            ),
        ));
    }
    let (kind, public, seed) = match args.kind {
        KeyKind::Transit | KeyKind::Encryption => {
            let key = XKey::generate();
            let kind = if args.kind == KeyKind::Transit {
                "transit"
            } else {
                "encryption"
            };
            (kind, key.public_key().to_owned(), key.seed())
        }
        KeyKind::Admin => {
            let key = AdminSigner::generate();
            ("admin", key.public_key(), key.seed())
        }
        KeyKind::Component | KeyKind::Account => {
            let (kind, key) = if args.kind == KeyKind::Component {
                ("component", nkeys::KeyPair::new_module())
            } else {
                ("account", nkeys::KeyPair::new_account())
            };
            let seed = key.seed().map_err(|e| {
                Failure::new(Code::Failure, format!("cannot encode the {kind} seed: {e}"))
            })?;
            (kind, key.public_key(), SecretString::from(seed))
        }
    };
    let mut contents = Zeroizing::new(seed.expose_secret().as_bytes().to_vec());
    contents.push(b'\n');
    write_private_file(&args.out, &contents).map_err(|e| {
        Failure::new(
            Code::Output,
            format!("could not write {}: {e}", args.out.display()),
        )
    })?;
    match args.output {
        OutputFormat::Json => print_json(&Generated {
            kind,
            public_key: &public,
            path: args.out.display().to_string(),
        }),
        OutputFormat::Text => outln!("{public}"),
    }
    Ok(Code::Ok)
}
