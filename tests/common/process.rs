//! Running the real binary and other processes: the `factorypal` command without inherited
//! settings, output as text, bounded waits, signals, and background processes whose output
//! goes to files.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::bootstrap;

/// The real `factorypal` binary, run in `dir` with no `FACTORYPAL__*` variables inherited.
pub fn factorypal(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_factorypal"));
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("FACTORYPAL__") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The binary run in `dir` with `dir/c.toml` as its config and the test broker, for
/// `subcommand args...`.
pub fn configured(dir: &Path, subcommand: &str, args: &[&str]) -> Command {
    let mut cmd = factorypal(dir);
    cmd.args([
        "--config",
        "c.toml",
        "--bootstrap",
        &bootstrap(),
        subcommand,
    ])
    .args(args);
    cmd
}

/// Runs `cmd`, killing it if it takes longer than `limit`. Output is drained while it runs, so
/// a chatty command cannot block on a full pipe.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    use std::process::Stdio;
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.expect("wait for command"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let out = rx.recv().expect("killed command reaps").expect("output");
            panic!(
                "command did not finish within {limit:?}; stderr: {}",
                stderr(&out)
            );
        }
    }
}

/// Sends `signal` (`TERM`, `KILL`, ...) to process `pid`, as an operator's `kill` would.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// A background process whose stdout and stderr go to files: a pipe nobody reads would fill
/// up and stall it.
pub struct Spawned {
    pub child: std::process::Child,
    logs: tempfile::TempDir,
}

impl Spawned {
    pub fn start(cmd: &mut Command) -> Self {
        let logs = tempfile::tempdir().unwrap();
        let file = |name: &str| std::fs::File::create(logs.path().join(name)).unwrap();
        let child = cmd.stdout(file("out")).stderr(file("err")).spawn().unwrap();
        Self { child, logs }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs.path().join(name)).unwrap_or_default()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the exit (killing it after `limit`): status, stdout, stderr.
    pub fn finish(mut self, limit: Duration) -> (std::process::ExitStatus, String, String) {
        let deadline = Instant::now() + limit;
        while self.is_running() {
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "process did not finish within {limit:?}: {}",
                    self.log("err")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.child.wait().unwrap();
        (status, self.log("out"), self.log("err"))
    }
}
