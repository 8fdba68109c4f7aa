//! Running child processes (node, npm) from the tests, bounded in time and output: shared by
//! the browser tests and the Socket.IO tests, which drive node projects of their own.

#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// How a child process ended, with its output.
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    pub note: String,
}

impl Outcome {
    pub fn describe(&self) -> String {
        format!(
            "{}--- stdout ---\n{}\n--- stderr ---\n{}",
            self.note, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion or until `timeout`, when it is killed (by its own handle, so
/// only that child). Both pipes are drained on their own threads so a chatty child cannot
/// block on a full pipe.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Outcome {
    let shown = format!("{cmd:?}");
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            return Outcome {
                success: false,
                stdout: String::new(),
                stderr: String::new(),
                note: format!("could not start {shown}: {e}\n"),
            }
        }
    };
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let (success, note) = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                break (status.success(), format!("{shown} exited with {status}\n"))
            }
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break (false, format!("{shown} killed after {timeout:?}\n"));
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(e) => break (false, format!("waiting for {shown} failed: {e}\n")),
        }
    };
    Outcome {
        success,
        stdout: collect(stdout),
        stderr: collect(stderr),
        note,
    }
}

/// A drained pipe's text. Waits at most a few seconds: a grandchild that inherited the pipe
/// and outlived a killed child must not hang the test.
fn collect(reader: thread::JoinHandle<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !reader.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    if reader.is_finished() {
        reader.join().unwrap_or_default()
    } else {
        "(output not collected: the pipe was still open)".to_owned()
    }
}

/// Reads a pipe to its end on a thread of its own; the first 1 MiB is kept, the rest read
/// and dropped (so the child never blocks on a full pipe).
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.by_ref().take(1 << 20).read_to_end(&mut bytes);
            let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
