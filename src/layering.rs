//! Dependencies flow one way (ARCHITECTURE.md): no cycle among the crate's top-level
//! modules. Read from the sources on every `cargo test`, so a `use` that closes a
//! circle fails here, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its files name through `crate::`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if ["lib", "main"].contains(&name.as_str()) {
            continue;
        }
        let mut used = BTreeSet::new();
        for file in rust_files(&path) {
            used.extend(crate_paths(&std::fs::read_to_string(file).unwrap()));
        }
        used.remove(&name);
        graph.entry(name).or_insert_with(BTreeSet::new).extend(used);
    }
    graph
}

fn rust_files(path: &Path) -> Vec<std::path::PathBuf> {
    if path.is_dir() {
        std::fs::read_dir(path).unwrap().flat_map(|e| rust_files(&e.unwrap().path())).collect()
    } else if path.extension().is_some_and(|e| e == "rs") {
        vec![path.to_path_buf()]
    } else {
        Vec::new()
    }
}

/// The first segment of every `crate::` path in `text`, `crate::{a, b::c}` included.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        start = false;
                        found.insert(ident(&group[i..]));
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

/// A cycle in `graph`, as the modules along it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut circle = path[i..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_modules_depend_on_each_other_one_way() {
    let graph = graph();
    assert!(graph.len() > 10, "read the modules: {graph:?}");
    if let Some(circle) = cycle(&graph) {
        panic!("a dependency cycle: {}", circle.join(" → "));
    }
}

#[test]
fn the_lower_floors_know_nothing_of_the_upper_ones() {
    let graph = graph();
    let forbidden = [
        ("store", "state"),
        ("view", "metrics"),
        ("view", "app"),
        ("dns", "metrics"),
        ("steer", "dns"),
        ("config", "zone"),
        ("api", "config"),
    ];
    for (from, to) in forbidden {
        assert!(!graph[from].contains(to), "{from} uses {to}: {:?}", graph[from]);
    }
}

#[test]
fn crate_paths_are_read_in_every_form() {
    let text = "use crate::a::B;\nuse crate::{b, c::{D, E}, d as f};\nlet x = crate::e::f();";
    assert_eq!(crate_paths(text), ["a", "b", "c", "d", "e"].map(String::from).into());
    let graph = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(cycle(&graph).unwrap(), ["a", "b", "a"]);
}
