//! Issue 13, "One CLI structure": the CLI's modules import each other in one direction only.
//! `args.rs` and the command modules used to import each other in a circle of nine files; now
//! `cli` lists the commands, each command keeps its arguments beside it, and commands depend
//! only on the shared leaves. This reads the `crate::…` paths of every source file (the grep
//! ARCHITECTURE.md describes) and fails on any cycle between modules.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `cli`, `exit`, … for top-level files; `commands::ca` for `commands/ca.rs` and everything
/// under `commands/ca/`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    match parts.as_slice() {
        [first, second, ..] if first == "commands" => format!("commands::{second}"),
        [first, ..] => first.clone(),
        [] => unreachable!(),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Module → the modules its code names through `crate::` (comments left out).
fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let from = module_of(src, &file);
        let text = std::fs::read_to_string(&file).unwrap();
        let targets = graph.entry(from.clone()).or_default();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or_default();
            for (i, _) in code.match_indices("crate::") {
                let path: Vec<&str> = code[i + "crate::".len()..]
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or_default()
                    .split("::")
                    .collect();
                let to = match path.as_slice() {
                    ["commands", command, ..] if !command.is_empty() => {
                        format!("commands::{command}")
                    }
                    [first, ..] => (*first).to_owned(),
                    [] => continue,
                };
                if to != from && !to.is_empty() {
                    targets.insert(to);
                }
            }
            // `super::build::…` in `commands/bundle.rs` names a sibling command module.
            if file.parent() == Some(src.join("commands").as_path()) {
                for (i, _) in code.match_indices("super::") {
                    let name = code[i + "super::".len()..]
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or_default();
                    let sibling = src.join("commands").join(name);
                    if sibling.with_extension("rs").exists() || sibling.is_dir() {
                        targets.insert(format!("commands::{name}"));
                    }
                }
            }
        }
    }
    graph
}

/// A cycle of the graph, if it has one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn the_cli_modules_import_each_other_without_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = edges(&src);
    assert_eq!(find_cycle(&graph), None, "{graph:#?}");
    // The shape ARCHITECTURE.md describes: commands never name `cli`, the leaves no command.
    for (module, targets) in &graph {
        if module.starts_with("commands") {
            assert!(!targets.contains("cli"), "{module} imports cli");
        }
        if ["exit", "io", "render", "globals", "options", "harden"].contains(&module.as_str()) {
            assert!(
                targets
                    .iter()
                    .all(|t| !t.starts_with("commands") && t != "cli"),
                "{module} imports {targets:?}"
            );
        }
    }
    assert!(graph["cli"].contains("commands::ca"), "{graph:#?}");
    assert!(
        graph["commands::bundle"].contains("commands::build"),
        "{graph:#?}"
    );
}

/// Negative control: the old shape (`args` naming three command modules that name `args`) is a
/// cycle, and it is found.
#[test]
fn a_cycle_is_found() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut edge = |a: &str, b: &str| {
        graph.entry(a.to_owned()).or_default().insert(b.to_owned());
        graph.entry(b.to_owned()).or_default();
    };
    edge("args", "exit");
    edge("args", "commands::trust");
    edge("commands::trust", "args");
    edge("commands::build", "args");
    let cycle = find_cycle(&graph).expect("a cycle");
    assert!(cycle.contains(&"args".to_owned()), "{cycle:?}");
    assert!(cycle.contains(&"commands::trust".to_owned()), "{cycle:?}");
}
