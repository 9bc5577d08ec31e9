//! The gateway binary for tests of another package, which cannot name it with
//! `env!("CARGO_BIN_EXE_..")`: it is found where cargo puts it, next to the test executable's
//! profile directory (`target/<profile>/deps/<test>` -> `target/<profile>/gateway`). When it is
//! missing or older than its sources, the first test that needs it runs `cargo build -p gateway`
//! with the same profile and target directory, under a lock file, so concurrent test processes
//! build once.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};

/// Where cargo put this test's artifacts: the profile directory, its name, the target root and,
/// when cross-compiling, the target triple.
struct Layout {
    profile_dir: PathBuf,
    profile: String,
    target_dir: PathBuf,
    triple: Option<String>,
}

fn layout() -> Layout {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target[/<triple>]/<profile>/deps/<test>
    let deps = exe.parent().expect("deps directory");
    let profile_dir = deps.parent().expect("profile directory").to_path_buf();
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile name")
        .to_string();
    let above = profile_dir.parent().expect("target directory");
    // Cargo marks its target root with CACHEDIR.TAG; anything else in between is a triple.
    let (target_dir, triple) = if above.join("CACHEDIR.TAG").exists() {
        (above.to_path_buf(), None)
    } else {
        let triple = above.file_name().and_then(|n| n.to_str()).map(String::from);
        (above.parent().expect("target root").to_path_buf(), triple)
    };
    Layout {
        profile_dir,
        profile,
        target_dir,
        triple,
    }
}

/// The gateway binary of this build, for tests of packages other than the gateway (whose own
/// tests name it with `env!("CARGO_BIN_EXE_gateway")`). Built first when it is missing or older
/// than the sources it is made of.
pub fn gateway_binary() -> PathBuf {
    let l = layout();
    let bin = l.profile_dir.join("gateway");
    if is_fresh(&bin) {
        return bin;
    }
    let lock_path = l.profile_dir.join("gateway-build.lock");
    let file = std::fs::File::create(&lock_path).expect("create the build lock file");
    // Held until this function returns: one build at a time; the others wait and find it done.
    let _lock = Flock::lock(file, FlockArg::LockExclusive).expect("take the build lock");
    if is_fresh(&bin) {
        return bin;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "-p", "gateway", "--bin", "gateway"])
        .arg("--target-dir")
        .arg(&l.target_dir);
    match l.profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    if let Some(triple) = &l.triple {
        cmd.args(["--target", triple]);
    }
    let status = cmd.status().expect("run cargo build -p gateway");
    assert!(status.success(), "cargo build -p gateway failed: {status}");
    assert!(bin.exists(), "cargo built no gateway at {}", bin.display());
    bin
}

/// True when `bin` exists and is newer than every source file cargo recorded for it (its
/// `gateway.d` dep-info). A fresh binary is used as it is: a workspace test run has just built
/// it with the workspace's unified features, which `cargo build -p gateway` would not pick, so
/// building again would replace it under the gateway's own tests running next to these.
fn is_fresh(bin: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let Ok(dep_info) = std::fs::read_to_string(bin.with_extension("d")) else {
        // No record of its sources: trust the binary cargo left there.
        return true;
    };
    dep_info_sources(&dep_info).iter().all(|src| {
        std::fs::metadata(src)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t <= built)
    })
}

/// The source paths of a make-style dep-info file (`target: a.rs b\ c.rs ...`; a space inside
/// a path is escaped with a backslash).
fn dep_info_sources(text: &str) -> Vec<PathBuf> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    // Targets end with a colon (`path:`); the sources follow them.
    words
        .into_iter()
        .filter(|w| !w.ends_with(':'))
        .map(PathBuf::from)
        .collect()
}
