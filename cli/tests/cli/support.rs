//! Running `tessera` as a user does, and reading what it says.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        // Default release logs go under here, not into the user's home.
        .env("XDG_DATA_HOME", std::env::temp_dir().join("tessera-cli-tests"))
        .output()
        .expect("tessera runs")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// A user mistake never shows a panic or a backtrace.
pub fn assert_clean_error(output: &Output, code: i32, message: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {err}");
    let error_line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in: {err}"));
    assert!(error_line.contains(message), "{err}\nshould contain: {message}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

pub fn gen(out: &Path, seed: &str) -> Output {
    tessera(&[
        "gen",
        "--out",
        out.to_str().unwrap(),
        "--providers",
        "RRK,RJ1",
        "--rows",
        "3000",
        "--seed",
        seed,
    ])
}

pub struct NodeProcess(Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_for(addr: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "node did not start on {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `tessera node` for `config` and waits until it listens; returns the process and its address.
pub fn start_node(config: &Path) -> (NodeProcess, String) {
    start("node", config)
}

/// Runs `tessera serve` for the federation file `config` and waits until it listens.
pub fn start_service(config: &Path) -> (NodeProcess, String) {
    start("serve", config)
}

/// Runs `tessera COMMAND --config CONFIG` and waits until it listens on the file's `listen` address.
fn start(command: &str, config: &Path) -> (NodeProcess, String) {
    let text = std::fs::read_to_string(config).unwrap();
    let listen = text.lines().find(|l| l.starts_with("listen")).expect("listen key");
    let addr = listen.split('"').nth(1).expect("quoted address").to_string();
    let process = NodeProcess(
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args([command, "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&addr);
    (process, addr)
}

/// Runs `tessera` with `stdin` on its standard input and `env` set.
pub fn tessera_with(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}
