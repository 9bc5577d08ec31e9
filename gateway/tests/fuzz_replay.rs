//! Replays the committed fuzz inputs through the same checks the fuzz targets run
//! (`fuzz/src/lib.rs`, compiled here as a module): every target's seed corpus
//! (`fuzz/seeds/<target>/`, which must not be empty) and every crash input kept under
//! `fuzz/regressions/<target>/`. Stable Rust, no libFuzzer.

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files in `dir`, sorted; `None` when there is no such folder.
fn files_in(dir: &Path) -> Option<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .map(|entry| entry.expect("a readable folder entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    Some(files)
}

/// The names of the folders in `dir`, sorted (none when it does not exist).
fn folders_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|entry| entry.expect("a readable folder entry"))
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Run `target`'s check on every input; fail naming each input whose check panicked.
fn check_all(target: &str, inputs: Vec<(String, Vec<u8>)>) {
    let failed: Vec<&str> = inputs
        .iter()
        .filter(
            |(_, data)| match catch_unwind(AssertUnwindSafe(|| checks::run(target, data))) {
                Ok(known) => {
                    assert!(known, "no fuzz target named {target}");
                    false
                }
                Err(_) => true,
            },
        )
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: the check fails on {failed:#?}"
    );
}

/// Replay `seeds/<target>/` (at least one input) and `regressions/<target>/` (if any).
fn replay(target: &str) {
    let seeds_dir = fuzz_dir().join("seeds").join(target);
    let seeds = files_in(&seeds_dir).unwrap_or_default();
    assert!(
        !seeds.is_empty(),
        "{}: no seeds for {target}",
        seeds_dir.display()
    );
    let regressions = files_in(&fuzz_dir().join("regressions").join(target)).unwrap_or_default();
    let inputs: Vec<(String, Vec<u8>)> = seeds
        .into_iter()
        .chain(regressions)
        .map(|path| {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.display().to_string(), data)
        })
        .collect();
    println!("{target}: {} committed inputs", inputs.len());
    check_all(target, inputs);
}

#[test]
fn http_head_inputs_pass_the_http_head_check() {
    replay("http_head");
}

#[test]
fn conn_inputs_pass_the_conn_check() {
    replay("conn");
}

#[test]
fn ws_request_inputs_pass_the_ws_request_check() {
    replay("ws_request");
}

#[test]
fn api_request_inputs_pass_the_api_request_check() {
    replay("api_request");
}

#[test]
fn token_inputs_pass_the_token_check() {
    replay("token");
}

#[test]
fn query_inputs_pass_the_query_check() {
    replay("query");
}

#[test]
fn sio_packet_inputs_pass_the_sio_packet_check() {
    replay("sio_packet");
}

#[test]
fn hook_answer_inputs_pass_the_hook_answer_check() {
    replay("hook_answer");
}

#[test]
fn broker_inputs_pass_the_broker_check() {
    replay("broker");
}

#[test]
fn nats_inputs_pass_the_nats_check() {
    replay("nats");
}

#[test]
fn every_target_is_replayed_and_every_folder_is_a_target() {
    let mut targets: Vec<String> = files_in(&fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets/")
        .iter()
        .filter_map(|path| Some(path.file_stem()?.to_str()?.to_owned()))
        .collect();
    targets.sort();
    let mut known = checks::TARGETS.map(str::to_owned).to_vec();
    known.sort();
    assert_eq!(
        targets, known,
        "fuzz_targets/ and the replayed targets differ"
    );
    assert_eq!(folders_in(&fuzz_dir().join("seeds")), known, "fuzz/seeds/");
    for folder in folders_in(&fuzz_dir().join("regressions")) {
        assert!(
            known.contains(&folder),
            "fuzz/regressions/{folder}/ is not a target: its inputs would never be replayed"
        );
    }
}

#[test]
fn generated_seeds_pass_their_checks() {
    for target in checks::TARGETS {
        let seeds = checks::seeds::seeds(target);
        assert!(!seeds.is_empty(), "no generated seeds for {target}");
        check_all(
            target,
            seeds.into_iter().map(|s| (s.name, s.data)).collect(),
        );
    }
    assert!(!checks::run("no-such-target", &[]));
}
