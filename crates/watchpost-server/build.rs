//! Build script: records the source revision and the compiler version for `watchpost_build_info`.
//! Both fall back to `unknown` (a source tarball has no git; nothing is ever downloaded).

use std::process::Command;

fn first_line(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .filter(|s| !s.is_empty())
}

fn main() {
    let revision = std::env::var("WATCHPOST_REVISION")
        .ok()
        .or_else(|| first_line(Command::new("git").args(["rev-parse", "--short=12", "HEAD"])))
        .unwrap_or_else(|| "unknown".to_owned());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let rustc =
        first_line(Command::new(rustc).arg("--version")).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=WATCHPOST_BUILD_REVISION={revision}");
    println!("cargo:rustc-env=WATCHPOST_BUILD_RUSTC={rustc}");
    println!("cargo:rerun-if-env-changed=WATCHPOST_REVISION");
    println!("cargo:rerun-if-changed=../../.git/HEAD");
}
