//! One module per command: resolve arguments, call the library, render.

pub(crate) mod build;
pub(crate) mod ca;
pub(crate) mod doctor;
pub(crate) mod env;
pub(crate) mod image;
pub(crate) mod inspect;
pub(crate) mod k8s;
pub(crate) mod secrets;
pub(crate) mod tls;
pub(crate) mod trust;

use std::path::Path;

use anchorage_trust::{Bundle, LoadOptions, Policy, TrustError, load};

use crate::exit::{Code, Failure};

/// `anchorage completions SHELL`: the completion script, generated from the clap definition.
pub(crate) fn completions(args: &crate::args::CompletionsArgs) -> Result<Code, Failure> {
    let mut command = <crate::args::Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "anchorage", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(Code::Ok)
}

/// `anchorage man`: one roff page for anchorage and every command (as `git help` pages list
/// their subcommands), generated from the clap definition.
pub(crate) fn man() -> Result<Code, Failure> {
    let command = <crate::args::Cli as clap::CommandFactory>::command();
    let mut page = Vec::new();
    let render = |page: &mut Vec<u8>, command: &clap::Command| {
        clap_mangen::Man::new(command.clone()).render(page)
    };
    let failed = |e: std::io::Error| {
        Failure::new(Code::Failure, format!("cannot render the manual page: {e}"))
    };
    render(&mut page, &command).map_err(failed)?;
    // Each command's own options, as sections of the same page.
    fn walk(command: &clap::Command, path: &str, page: &mut Vec<u8>) -> std::io::Result<()> {
        for sub in command.get_subcommands() {
            let name = format!("{path} {}", sub.get_name());
            let man = clap_mangen::Man::new(sub.clone());
            page.extend_from_slice(format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes());
            man.render_description_section(page)?;
            man.render_options_section(page)?;
            man.render_extra_section(page)?;
            walk(sub, &name, page)?;
        }
        Ok(())
    }
    walk(&command, "anchorage", &mut page).map_err(failed)?;
    out!("{}", String::from_utf8_lossy(&page));
    Ok(Code::Ok)
}

/// Reads the certificate file or directory an option names (`--bundle`, `--extra`, `--ca`) into a
/// bundle, with the default policy. Errors name the option: a key is exit 4 even when nothing
/// else loaded, and "no usable certificates" gives the first problem, which says more.
pub(crate) fn read_option_bundle(path: &Path, option: &str) -> Result<Bundle, Failure> {
    crate::io::check_input(option, path)?;
    let source = crate::io::source(option, path)?;
    let loaded = load(&[source], &LoadOptions::default());
    let first_problem = loaded.problems.first().map(ToString::to_string);
    // The policy first: a private key is refused (exit 4) even when nothing else loaded.
    let (bundle, _report) = Policy::default().apply(loaded).map_err(|e| {
        let no_certificates = matches!(e, TrustError::NoCertificates { .. });
        let mut f = Failure::from(e);
        f.message = match (&first_problem, no_certificates) {
            // The problem names the file already; it says more than "no usable certificates".
            (Some(problem), true) => format!("{option}: {problem}"),
            _ => format!("{option} {}: {}", crate::io::display(path), f.message),
        };
        f
    })?;
    Ok(bundle)
}
