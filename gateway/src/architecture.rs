//! Keeps `docs/ARCHITECTURE.md` true: its table "What may import what"
//! names, for each room (a module of `gateway/src`), the rooms it may
//! import. Every `crate::` path in the sources must go to one of them,
//! every room must have a row, and the table itself has no circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What each room may import.
type Table = BTreeMap<String, BTreeSet<String>>;

/// The table under "## What may import what" in `doc`.
fn table(doc: &str) -> Table {
    let section = doc
        .split("## What may import what")
        .nth(1)
        .expect("the section \"What may import what\"");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut table = Table::new();
    for line in section.lines().filter(|line| line.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        match cells.as_slice() {
            [room, may] if *room != "Room" && !room.starts_with("---") => {
                let may = may
                    .split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .map(String::from)
                    .collect();
                table.insert((*room).to_owned(), may);
            }
            _ => {}
        }
    }
    table
}

/// The room of a file at `path` under `gateway/src`: its first component,
/// without `.rs`.
fn room(path: &str) -> String {
    let first = path.split('/').next().unwrap_or(path);
    first.trim_end_matches(".rs").to_owned()
}

/// The rooms `source` reaches by `crate::` paths, comments left out.
fn reached(source: &str) -> BTreeSet<String> {
    let mut rooms = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (at, _) in code.match_indices("crate::") {
            // `eventgateway::` and other crates end in "crate" only as a
            // word of their own.
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                rooms.insert(name);
            }
        }
    }
    rooms
}

/// What `files` (path under `gateway/src`, text) do that `table` does not
/// allow, one line each: an import it does not name, a room without a row.
fn breaches(table: &Table, files: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    let mut rooms = BTreeSet::new();
    for (path, source) in files {
        let from = room(path);
        if matches!(from.as_str(), "lib" | "main" | "architecture") {
            continue;
        }
        rooms.insert(from.clone());
        let Some(may) = table.get(&from) else {
            continue;
        };
        for to in reached(source) {
            if to != from && !may.contains(&to) {
                found.push(format!("{path}: {from} -> {to}"));
            }
        }
    }
    for room in rooms {
        if !table.contains_key(&room) {
            found.push(format!("room {room} has no row"));
        }
    }
    found
}

/// A circle of the table's arrows, if it has one.
fn circle(table: &Table) -> Option<Vec<String>> {
    fn visit(
        room: &str,
        table: &Table,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|r| r == room) {
            let mut circle = path[at..].to_vec();
            circle.push(room.to_owned());
            return Some(circle);
        }
        if !done.insert(room.to_owned()) {
            return None;
        }
        path.push(room.to_owned());
        for next in table.get(room).into_iter().flatten() {
            if let Some(circle) = visit(next, table, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    table
        .keys()
        .find_map(|room| visit(room, table, &mut Vec::new(), &mut done))
}

/// Every `.rs` file under `dir`, as (path under `root`, text).
fn sources(root: &Path, dir: &Path, into: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("the sources can be read") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(root, &path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).expect("under the root");
            let text = std::fs::read_to_string(&path).expect("the source can be read");
            into.push((relative.to_string_lossy().replace('\\', "/"), text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_import_of_the_gateway_is_one_the_architecture_allows() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(manifest.join("../docs/ARCHITECTURE.md"))
            .expect("docs/ARCHITECTURE.md");
        let table = table(&doc);
        assert!(table.len() >= 10, "the table was read: {table:?}");
        let root = manifest.join("src");
        let mut files = Vec::new();
        sources(&root, &root, &mut files);
        let found = breaches(&table, &files);
        assert!(
            found.is_empty(),
            "imports docs/ARCHITECTURE.md does not allow (change the code, or the table with a reason):\n{}",
            found.join("\n")
        );
        assert_eq!(circle(&table), None, "the table has a circle");
    }

    #[test]
    fn a_forbidden_import_a_missing_row_and_a_circle_are_found() {
        let doc = "## What may import what\n\n| Room | May import |\n| --- | --- |\n\
                   | grpc | kafka, error |\n| kafka | error |\n| error | |\n\n## Next\n| x | y |\n";
        let table = table(doc);
        assert_eq!(table.len(), 3, "{table:?}");
        let files = [
            ("grpc/mod.rs", "use crate::kafka::Cluster;\nuse crate::error::Error;"),
            (
                "kafka/producer.rs",
                "// crate::grpc in a comment is no import\nuse eventgateway::v1;\nfn f() { crate::grpc::serve(); }",
            ),
            ("error.rs", "use crate::text::clip;"),
            ("spans.rs", ""),
            ("lib.rs", "use crate::grpc;"),
        ]
        .map(|(path, text)| (path.to_owned(), text.to_owned()));
        assert_eq!(
            breaches(&table, &files),
            [
                "kafka/producer.rs: kafka -> grpc",
                "error.rs: error -> text",
                "room spans has no row",
            ]
        );
        let mut looped = table.clone();
        looped.get_mut("kafka").unwrap().insert("grpc".into());
        assert_eq!(
            circle(&looped),
            Some(vec!["grpc".into(), "kafka".into(), "grpc".into()])
        );
        assert_eq!(circle(&table), None);
    }
}
