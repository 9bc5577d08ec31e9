//! Replays the committed fuzz regression inputs (`fuzz/regressions/<target>/*`) through the same
//! checks the fuzz targets run, so every crash the fuzzer once found stays a plain unit test.

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::path::Path;

#[test]
fn committed_fuzz_regressions_still_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let target = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        inputs.sort();
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            println!("replaying {}", input.display());
            assert!(
                checks::run(&target, &data),
                "{}: no fuzz target named {target}",
                dir.display()
            );
        }
    }
}

#[test]
fn replay_knows_the_targets_and_refuses_a_misnamed_folder() {
    // Client role, no RSV, no limit; one chunk size of 1 byte; then the RFC 6455 §5.7 "Hello".
    assert!(checks::run(
        "header",
        &[0x01, 0x00, 0x00, 0x81, 0x05, b'H', b'e', b'l', b'l', b'o']
    ));
    assert!(!checks::run("no-such-target", &[]));
}

#[test]
fn generated_seeds_pass_their_checks() {
    for target in checks::TARGETS {
        let seeds = checks::seeds::seeds(target);
        assert!(!seeds.is_empty(), "no generated seeds for {target}");
        for seed in seeds {
            println!("checking generated {target} seed {}", seed.name);
            assert!(checks::run(target, &seed.data));
        }
    }
}
