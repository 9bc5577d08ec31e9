//! Replays the committed fuzz inputs through the same checks the fuzz targets run
//! (`fuzz/src/lib.rs`, compiled here as a module): the seed corpus of every target
//! (`fuzz/seeds/<target>/`, which must not be empty) and every crash input kept under
//! `fuzz/regressions/<target>/`. No nightly toolchain and no libFuzzer are needed.

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files directly in `dir`, sorted; `None` if there is no such folder.
fn files_in(dir: &Path) -> Option<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut files: Vec<PathBuf> = entries
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    Some(files)
}

/// The names of the sub-folders of `dir`, sorted.
fn folders_in(dir: &Path) -> Vec<String> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut names: Vec<String> = entries
        .map(|entry| entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())))
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Run `target`'s check on each input; panics naming every input whose check failed.
fn check_all(target: &str, inputs: impl IntoIterator<Item = (String, Vec<u8>)>) -> usize {
    let mut count = 0;
    let mut failed = Vec::new();
    for (name, data) in inputs {
        count += 1;
        match catch_unwind(AssertUnwindSafe(|| checks::run(target, &data))) {
            Ok(true) => {}
            Ok(false) => panic!("no fuzz target named {target}"),
            Err(_) => failed.push(name),
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: the check fails on {failed:#?}"
    );
    count
}

/// Replay `fuzz/seeds/<target>/` (which must hold at least one input) and
/// `fuzz/regressions/<target>/` (if there is one).
fn replay_committed(target: &str) {
    let seeds_dir = fuzz_dir().join("seeds").join(target);
    let seeds = files_in(&seeds_dir)
        .unwrap_or_else(|| panic!("{}: no seed corpus for {target}", seeds_dir.display()));
    assert!(
        !seeds.is_empty(),
        "{}: the seed corpus of {target} is empty",
        seeds_dir.display()
    );
    let regressions = files_in(&fuzz_dir().join("regressions").join(target)).unwrap_or_default();
    let read = |path: PathBuf| {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let shown = path
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(&path);
        (shown.display().to_string(), data)
    };
    let replayed = check_all(target, seeds.into_iter().chain(regressions).map(read));
    println!("{target}: replayed {replayed} committed inputs");
}

#[test]
fn header_seeds_and_regressions_pass_the_header_check() {
    replay_committed("header");
}

#[test]
fn utf8_seeds_and_regressions_pass_the_utf8_check() {
    replay_committed("utf8");
}

#[test]
fn unmask_seeds_and_regressions_pass_the_unmask_check() {
    replay_committed("unmask");
}

#[test]
fn fused_seeds_and_regressions_pass_the_fused_check() {
    replay_committed("fused");
}

#[test]
fn differential_seeds_and_regressions_pass_the_differential_check() {
    replay_committed("differential");
}

#[test]
fn every_fuzz_target_is_replayed_and_has_a_seed_folder() {
    let dir = fuzz_dir().join("fuzz_targets");
    let mut targets: Vec<String> = files_in(&dir)
        .unwrap_or_else(|| panic!("{}: missing", dir.display()))
        .iter()
        .filter_map(|path| path.file_stem()?.to_str().map(str::to_owned))
        .collect();
    targets.sort();
    let mut known = checks::TARGETS.map(str::to_owned).to_vec();
    known.sort();
    assert_eq!(
        targets, known,
        "fuzz_targets/ and the replayed targets differ"
    );
    assert_eq!(folders_in(&fuzz_dir().join("seeds")), known);
}

#[test]
fn regression_folders_are_named_after_fuzz_targets() {
    for folder in folders_in(&fuzz_dir().join("regressions")) {
        assert!(
            checks::TARGETS.contains(&folder.as_str()),
            "fuzz/regressions/{folder}/ is not a fuzz target: its inputs would never be replayed"
        );
    }
}

#[test]
fn generated_seeds_pass_their_checks() {
    for target in checks::TARGETS {
        let seeds = checks::seeds::seeds(target);
        assert!(!seeds.is_empty(), "no generated seeds for {target}");
        check_all(target, seeds.into_iter().map(|s| (s.name, s.data)));
    }
}

#[test]
fn replay_refuses_an_unknown_target() {
    // Client role, no RSV, no limit; one chunk size of 1 byte; then the RFC 6455 §5.7 "Hello".
    assert!(checks::run(
        "header",
        &[0x01, 0x00, 0x00, 0x81, 0x05, b'H', b'e', b'l', b'l', b'o']
    ));
    assert!(!checks::run("no-such-target", &[]));
}
