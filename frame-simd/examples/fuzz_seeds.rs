//! Writes the generated fuzz seeds (`fuzz/src/seeds.rs`) to `<dir>/<target>/<name>`, after
//! running each through its target's check. `scripts/fuzz-seeds.sh frame-simd` fuzzes from these
//! files and minimises the result into the committed corpus, `fuzz/seeds/<target>/`.
//!
//! ```sh
//! cargo run -p frame-simd --example fuzz_seeds -- <dir>
//! ```

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz_seeds <dir>");
        return ExitCode::FAILURE;
    };
    for target in checks::TARGETS {
        let target_dir = dir.join(target);
        if let Err(e) = std::fs::create_dir_all(&target_dir) {
            eprintln!("{}: {e}", target_dir.display());
            return ExitCode::FAILURE;
        }
        let seeds = checks::seeds::seeds(target);
        for seed in &seeds {
            assert!(checks::run(target, &seed.data), "no fuzz target {target}");
            let path = target_dir.join(&seed.name);
            if let Err(e) = std::fs::write(&path, &seed.data) {
                eprintln!("{}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        println!("{target}: {} seeds", seeds.len());
    }
    ExitCode::SUCCESS
}
