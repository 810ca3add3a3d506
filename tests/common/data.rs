//! Test inputs on disk: generated sample data and config files for `consume` and `run`.

use std::path::Path;

use super::{factorypal, stderr};

/// A fresh data dir with `metrics` and `workorders` generated records.
pub fn sample_data(metrics: u64, workorders: u64) -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let out = factorypal(data.path())
        .args(["gen-data", "--out", ".", "--metrics", &metrics.to_string()])
        .args(["--workorders", &workorders.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    data
}

/// `dir/c.toml`: a consumer writing to `dir/out` with the sample schemas for `metrics` and
/// `workorder` (topic names), plus `consumer_extra` lines in `[consumer]`.
pub fn write_config(dir: &Path, metrics: &str, workorder: &str, consumer_extra: &str) {
    let text = format!(
        "[consumer]\noutput = \"out\"\n{consumer_extra}\n\
         [consumer.topics.{metrics}.schema]\nid = \"int32\"\nval = \"float64\"\ntime = \"timestamp\"\n\
         [consumer.topics.{workorder}.schema]\ntime = \"timestamp\"\nproduct = \"int32\"\nproduction = \"float64\"\n"
    );
    std::fs::write(dir.join("c.toml"), text).unwrap();
}

/// [`write_config`] plus the API on `data` and a source per topic, for `run`.
pub fn write_run_config(
    dir: &Path,
    data: &Path,
    metrics: &str,
    workorder: &str,
    consumer_extra: &str,
) {
    write_config(dir, metrics, workorder, consumer_extra);
    let mut config = std::fs::read_to_string(dir.join("c.toml")).unwrap();
    config += &format!(
        "[api]\nbind = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
         [[producer.sources]]\nname = \"metrics\"\npath = \"/stream_data_metrics\"\ntopic = \"{metrics}\"\nkey = \"id\"\n\
         [[producer.sources]]\nname = \"workorder\"\npath = \"/stream_data_workorder\"\ntopic = \"{workorder}\"\nkey = \"product\"\n",
        data.display()
    );
    std::fs::write(dir.join("c.toml"), config).unwrap();
}
