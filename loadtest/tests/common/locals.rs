//! A file of the generated interfaces' local addresses, which the server and the harness's
//! expectation both read: directions are then decided by them, whatever order concurrent
//! requests or shards deliver records in (learned addresses depend on each interface's first
//! records, and so on that order).

/// The file's path, written once per test process.
pub fn local_addresses_file() -> &'static str {
    static FILE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let name = format!("vpcflowd-harness-locals-{}.json", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, vpcflowd::generate::Generator::local_addresses_json(1000)).unwrap();
        path.to_str().unwrap().to_string()
    })
}
