//! Compiles Berth's volume agent (`agent/volume_lister.rs`, std only) with the same `rustc`
//! as a static executable, which `backups::listing` embeds and runs in a `FROM scratch`
//! helper image. A static glibc executable needs `libc.a` (Debian's `libc6-dev`, which every
//! Rust build on Linux already needs for `crt1.o`).

use std::{env, path::PathBuf, process::Command};

fn main() {
    let source = "agent/volume_lister.rs";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition=2021",
            "--crate-name=volume_lister",
            "-C",
            "opt-level=2",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(out.join("volume-lister"))
        .arg(source)
        // The engines Berth drives run the same platform as Berth itself.
        .arg(format!(
            "--target={}",
            env::var("TARGET").expect("cargo sets TARGET")
        ))
        .status()
        .expect("cannot run rustc for the volume agent");
    assert!(status.success(), "the volume agent did not compile");
}
