//! The layering of `gateway/src/`, checked: each top-level module may import (`crate::...`) only
//! the modules listed for it here, all of which sit below it, so the imports form no cycle and a
//! lower layer never reaches a higher one (conn knows no app, router knows no driver). A new
//! import across layers fails this test until the table below says where it belongs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each module and what it may import, lowest first.
const LAYERS: &[(&str, &[&str])] = &[
    ("conn", &[]),
    ("query", &[]),
    ("names", &[]),
    ("outbox", &[]),
    ("json", &["conn"]),
    ("metrics", &["conn"]),
    ("driver", &["conn", "metrics"]),
    ("auth", &["conn", "json", "query", "names"]),
    ("hooks", &["conn", "metrics"]),
    ("router", &["conn", "json", "names", "auth", "hooks"]),
    ("broker", &["conn", "query", "router"]),
    (
        "app",
        &["conn", "json", "query", "names", "auth", "hooks", "router"],
    ),
    (
        "api",
        &[
            "conn", "json", "query", "names", "metrics", "auth", "router",
        ],
    ),
    (
        "config",
        &[
            "conn", "driver", "auth", "hooks", "api", "router", "broker", "app",
        ],
    ),
    ("check", &["config", "broker"]),
    (
        "shard",
        &[
            "conn", "json", "query", "names", "outbox", "metrics", "driver", "auth", "hooks",
            "router", "app", "api",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules named after `crate::` in `text`.
fn imports(text: &str) -> BTreeSet<String> {
    text.match_indices("crate::")
        .map(|(at, m)| {
            text[at + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let module = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs"))
            .expect("a module name");
        if module == "lib" || module == "main" {
            continue;
        }
        seen.insert(module.to_owned());
        let Some(may) = allowed.get(module) else {
            broken.push(format!(
                "{}: module {module} has no place in LAYERS",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("readable source file");
        for import in imports(&text) {
            if import != module && !may.contains(&import.as_str()) {
                broken.push(format!(
                    "{}: {module} imports crate::{import}",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports across layers:\n{}",
        broken.join("\n")
    );
    assert!(
        seen.contains("conn") && seen.contains("app"),
        "the scan found the sources"
    );
}

#[test]
fn the_layer_table_itself_has_no_cycle() {
    // Each module may only import modules listed before it.
    for (i, (module, may)) in LAYERS.iter().enumerate() {
        for dep in *may {
            let at = LAYERS.iter().position(|(m, _)| m == dep);
            assert!(
                at.is_some_and(|at| at < i),
                "{module} may import {dep}, which is not below it"
            );
        }
    }
}
