//! Names the commit and the cargo features for `--version` and `steerdns_build_info`.

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(|f| f.to_lowercase().replace('_', "-")))
        .collect();
    let features = if features.is_empty() { "none".to_string() } else { features.join(",") };
    println!("cargo:rustc-env=STEERDNS_COMMIT={commit}");
    println!("cargo:rustc-env=STEERDNS_FEATURES={features}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
