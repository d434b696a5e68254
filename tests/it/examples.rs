//! Every file in examples/ and zones/ loads, and the quickstart serves.

fn files(dir: &str, ext: &str) -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    assert!(!out.is_empty());
    out
}

#[test]
fn every_example_config_loads() {
    for path in files("examples", "toml") {
        steerdns::loaded::load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
    }
}

#[test]
fn every_zone_file_loads() {
    for path in files("zones", "zone") {
        let origin = path.file_stem().unwrap().to_string_lossy().to_string();
        let dir = tempfile::tempdir().unwrap();
        let config = format!("[[zones]]\norigin = \"{origin}.\"\nfile = \"{}\"\n", path.display());
        std::fs::write(dir.path().join("c.toml"), config).unwrap();
        steerdns::loaded::load(&dir.path().join("c.toml")).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
    }
}
