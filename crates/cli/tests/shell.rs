//! The binary as a shell user meets it: completion scripts and the manual page generated from
//! the clap definition, `-q/--quiet`, and the help text (no word cut mid-word, no exit code
//! listed twice).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use anchorage_test_support::{pki, tempdir};

fn anchorage(dir: &Path, args: &[&str]) -> Output {
    anchorage_in(dir, args, 100)
}

/// `anchorage ARGS` in a terminal `columns` wide (clap wraps help text to it).
fn anchorage_in(dir: &Path, args: &[&str], columns: usize) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args(args)
        .current_dir(dir)
        .env_remove("ANCHORAGE_LOG")
        .env("COLUMNS", columns.to_string())
        .output()
        .expect("run anchorage")
}

/// The lines of the "Examples:" block of a help page (up to the blank line).
fn examples(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Example"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// `name` on PATH, for optional tools (not required: no CI failure when absent).
fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|p| p.join(name))
        .find(|p| p.is_file())
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn completions_are_generated_for_bash_zsh_and_fish() {
    let dir = tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = anchorage(dir.path(), &["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        // Every command and a nested one are offered.
        for word in [
            "bundle",
            "doctor",
            "trust",
            "install",
            "completions",
            "--tls-ca-path",
        ] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
        let path = dir.path().join(format!("anchorage.{shell}"));
        #[allow(clippy::disallowed_methods)] // a test artefact, not an output
        std::fs::write(&path, &script).unwrap();
    }
    // bash parses its script (zsh and fish when installed).
    for (shell, check) in [("bash", "-n"), ("zsh", "-n"), ("fish", "--no-execute")] {
        let Some(program) = on_path(shell) else {
            assert_ne!(shell, "bash", "bash must be there");
            continue;
        };
        let out = Command::new(program)
            .arg(check)
            .arg(dir.path().join(format!("anchorage.{shell}")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
    }
    // Negative control: an unknown shell is a usage error.
    let out = anchorage(dir.path(), &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_manual_page_is_roff_and_covers_every_command() {
    let dir = tempdir().unwrap();
    let out = anchorage(dir.path(), &["man"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(
        page.contains(".TH anchorage 1"),
        "{}",
        &page[..200.min(page.len())]
    );
    for section in [
        ".SH \"ANCHORAGE BUNDLE BUILD\"",
        ".SH \"ANCHORAGE TRUST INSTALL\"",
        ".SH \"ANCHORAGE SECRETS KEYGEN\"",
        ".SH \"ANCHORAGE K8S PATCH\"",
    ] {
        assert!(page.contains(section), "lacks {section}");
    }
    // man itself renders it, when installed.
    if let Some(man) = on_path("man") {
        let path = dir.path().join("anchorage.1");
        #[allow(clippy::disallowed_methods)] // a test artefact, not an output
        std::fs::write(&path, &page).unwrap();
        let rendered = Command::new(man)
            .arg("-l")
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("COLUMNS", "80")
            .output()
            .unwrap();
        if rendered.status.success() {
            assert!(stdout(&rendered).contains("trust install"));
        }
    }
}

#[test]
fn quiet_silences_warnings_but_not_errors() {
    let dir = tempdir().unwrap();
    // A bundle of a private root only: `env` warns that it holds no public roots.
    pki::root_ca("Quiet Root").write_pem(dir.path(), "private.pem");
    let loud = anchorage(dir.path(), &["env", "--bundle", "private.pem"]);
    assert!(loud.status.success(), "{}", stderr(&loud));
    assert!(
        stderr(&loud).contains("warning"),
        "negative control: {}",
        stderr(&loud)
    );
    for flag in ["-q", "--quiet"] {
        let quiet = anchorage(dir.path(), &[flag, "env", "--bundle", "private.pem"]);
        assert!(quiet.status.success(), "{}", stderr(&quiet));
        assert_eq!(stderr(&quiet), "", "{flag}");
        assert_eq!(stdout(&quiet), stdout(&loud), "stdout is unchanged");
    }
    // Errors are still said.
    let failed = anchorage(dir.path(), &["-q", "env", "--bundle", "missing.pem"]);
    assert_eq!(failed.status.code(), Some(3));
    assert!(stderr(&failed).contains("error"), "{}", stderr(&failed));
}

/// Every `--help` page of every command, with its path.
fn every_help(dir: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, path: &mut Vec<String>, out: &mut Vec<(String, String)>) {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let o = anchorage(dir, &args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let text = stdout(&o);
        out.push((path.join(" "), text.clone()));
        // The "Commands:" block lists the subcommands, two spaces in.
        let mut in_commands = false;
        let mut subs = Vec::new();
        for line in text.lines() {
            if line == "Commands:" {
                in_commands = true;
                continue;
            }
            if in_commands {
                if line.is_empty() {
                    break;
                }
                if let Some(rest) = line.strip_prefix("  ")
                    && !rest.starts_with(' ')
                {
                    let name = rest.split_whitespace().next().unwrap_or_default();
                    if name != "help" {
                        subs.push(name.to_owned());
                    }
                }
            }
        }
        for sub in subs {
            path.push(sub);
            walk(dir, path, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut Vec::new(), &mut out);
    out
}

#[test]
fn help_lists_each_exit_code_once_and_cuts_no_word() {
    let dir = tempdir().unwrap();
    let pages = every_help(dir.path());
    assert!(pages.len() > 20, "{} pages", pages.len());
    let mut problems = Vec::new();
    for (path, text) in &pages {
        // Exit codes: "  N  text" lines after "Exit codes:"; each N once.
        let mut seen = BTreeSet::new();
        let mut in_codes = false;
        for line in text.lines() {
            if line.trim_end() == "Exit codes:" {
                in_codes = true;
                seen.clear();
                continue;
            }
            if in_codes {
                let trimmed = line.trim_start();
                let Some((code, _)) = trimmed.split_once("  ") else {
                    if line.trim().is_empty() {
                        in_codes = false;
                    }
                    continue;
                };
                // "  0  …" and " 15  …": the number right-aligned in three columns (a
                // continuation line is indented further).
                if let Ok(code) = code.trim().parse::<u8>()
                    && line.len() - trimmed.len() <= 2
                {
                    if seen.last().is_some_and(|last| *last > code) {
                        problems.push(format!(
                            "`anchorage {path} --help`: exit code {code} out of order"
                        ));
                    }
                    if !seen.insert(code) {
                        problems.push(format!("`anchorage {path} --help`: exit code {code} twice"));
                    }
                }
            }
        }
        // Common options sit under "Options:", not under the heading of a flattened group
        // (`ca issue --output` is not a Vault option).
        let mut heading = "";
        for line in text.lines() {
            if !line.starts_with(' ') && line.ends_with(':') {
                heading = line;
            }
            let option = line.trim_start();
            if (option.starts_with("--output <") || option.starts_with("-h, --help"))
                && heading != "Options:"
            {
                problems.push(format!(
                    "`anchorage {path} --help`: {} under {heading:?}",
                    option.split_whitespace().next().unwrap_or_default()
                ));
            }
        }
        // A word cut mid-word: a line that ends in letters immediately followed by a line that
        // starts with letters, in one paragraph of prose, where the two halves are not words.
        for cut in ["retr\n", "agai\n", " th\n", " wi\n"] {
            if text.contains(cut) {
                problems.push(format!("`anchorage {path} --help`: cut word {cut:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn counts_say_one_certificate_and_two_certificates() {
    let dir = tempdir().unwrap();
    pki::root_ca("Count Root A").write_pem(dir.path(), "a.pem");
    pki::root_ca("Count Root B").write_pem(dir.path(), "b.pem");
    let one = anchorage(dir.path(), &["bundle", "build", "a.pem"]);
    assert!(one.status.success(), "{}", stderr(&one));
    assert!(
        stderr(&one).contains(
            "bundle of 1 certificate from 1 read (0 duplicates, 0 expired dropped, 0 problems)"
        ),
        "{}",
        stderr(&one)
    );
    let inspect = anchorage(dir.path(), &["bundle", "inspect", "a.pem"]);
    assert!(
        stdout(&inspect).contains("1 certificate, 0 problems in"),
        "{}",
        stdout(&inspect)
    );
    // Negative control: two are plural.
    let two = anchorage(dir.path(), &["bundle", "build", "a.pem", "b.pem", "a.pem"]);
    assert!(
        stderr(&two).contains("bundle of 2 certificates from 3 read (1 duplicate,"),
        "{}",
        stderr(&two)
    );
}

#[test]
fn inspecting_mozilla_s_roots_is_a_table_and_v_gives_every_field() {
    let dir = tempdir().unwrap();
    let built = anchorage(
        dir.path(),
        &["bundle", "build", "--mozilla", "--pem", "big.pem"],
    );
    assert!(built.status.success(), "{}", stderr(&built));
    let table = anchorage(dir.path(), &["bundle", "inspect", "big.pem"]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    let lines: Vec<&str> = text.lines().collect();
    let count = lines.len() - 2; // header and footer
    assert!(count > 100, "{count} rows");
    assert!(lines[0].contains("NOT AFTER") && lines[0].contains("SUBJECT"));
    assert!(lines[1].trim_start().starts_with("1  "), "{}", lines[1]);
    assert!(
        lines
            .last()
            .unwrap()
            .contains(&format!("{count} certificates, 0 problems"))
    );
    assert!(!text.contains("subject hash:"), "no full detail by default");
    // -v: every field of every certificate (the negative control of the table's brevity).
    let full = anchorage(dir.path(), &["bundle", "inspect", "-v", "big.pem"]);
    let full = stdout(&full);
    assert_eq!(full.matches("subject hash:").count(), count);
    assert!(full.lines().count() > 5 * count);
}

#[test]
fn examples_survive_an_80_column_terminal() {
    let dir = tempdir().unwrap();
    let mut problems = Vec::new();
    for (path, _) in every_help(dir.path()) {
        let mut args: Vec<&str> = path.split_whitespace().collect();
        args.push("--help");
        let wide = examples(&stdout(&anchorage_in(dir.path(), &args, 250)));
        let narrow = examples(&stdout(&anchorage_in(dir.path(), &args, 80)));
        // Nothing was wrapped at 80 columns: the block is the same as on a wide terminal, so
        // every continuation is an explicit `\` a shell accepts.
        if wide != narrow {
            problems.push(format!(
                "`anchorage {path} --help`: examples wrap at 80 columns"
            ));
        }
        for line in &wide {
            if line.chars().count() > 80 {
                problems.push(format!("`anchorage {path} --help`: {line:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
