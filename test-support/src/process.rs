//! A server process started by a test. Its stdout is read line by line on a thread (a server
//! announces its addresses there), its stderr is drained into a bounded buffer for failure
//! messages, and it is stopped by the PID it was started with when dropped: SIGTERM first, as a
//! supervisor would, then SIGKILL if it has not exited within [`STOP_GRACE`].

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a dropped process may take to exit after SIGTERM before it is killed. A server with
/// no clients left exits well within it; one still draining connections is not waited for.
pub const STOP_GRACE: Duration = Duration::from_secs(1);
/// The most stderr kept per process: a chatty server must not eat the test's memory.
const STDERR_LIMIT_BYTES: usize = 1 << 20;
/// The most stderr printed when a test fails while the process runs.
const STDERR_SHOWN_BYTES: usize = 16 << 10;
/// How long reading stderr after the process exited waits for the last bytes in the pipe (a
/// child of the process may hold it open for longer; then what arrived is what is shown).
const STDERR_DRAIN: Duration = Duration::from_secs(2);

/// The tail of a process's stderr, and whether the pipe reached its end.
#[derive(Default)]
struct Tail {
    kept: Mutex<Vec<u8>>,
    closed: AtomicBool,
}

/// A running child process, stopped (by its own PID) and reaped when dropped.
pub struct Process {
    name: String,
    child: Child,
    stdout: Mutex<Receiver<String>>,
    stderr: Arc<Tail>,
    status: Option<ExitStatus>,
}

impl Process {
    /// Start `cmd` with stdin closed and stdout and stderr piped.
    pub fn spawn(mut cmd: Command) -> Process {
        cmd.stdin(Stdio::null());
        Process::start(cmd)
    }

    /// Start `cmd` with stdin, stdout and stderr piped; stdin is handed back for the test to
    /// answer the process (a script that asks its parent to act and waits for the answer).
    pub fn spawn_with_stdin(mut cmd: Command) -> (Process, ChildStdin) {
        cmd.stdin(Stdio::piped());
        let mut process = Process::start(cmd);
        let stdin = process.child.stdin.take().expect("stdin is piped");
        (process, stdin)
    }

    fn start(mut cmd: Command) -> Process {
        let name = describe(&cmd);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name}: {err}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        Process {
            name,
            child,
            stdout: Mutex::new(read_lines(stdout)),
            stderr: keep_tail(stderr),
            status: None,
        }
    }

    /// The program and its arguments, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line (without its line ending), or `None` if stdout closed or `deadline`
    /// passed first.
    pub fn next_line(&self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let stdout = self.stdout.lock().ok()?;
        stdout.recv_timeout(left).ok()
    }

    /// What the process wrote to stderr so far (its last MiB, lossy UTF-8); once it is known
    /// to have exited, everything it wrote (the reader is given up to [`STDERR_DRAIN`] to take
    /// the last bytes from the pipe, so a line written just before the exit is never missed).
    pub fn stderr(&self) -> String {
        if self.status.is_some() {
            let deadline = Instant::now() + STDERR_DRAIN;
            while !self.stderr.closed.load(Ordering::Acquire) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
        }
        let buf = self
            .stderr
            .kept
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default();
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Send `signal` to this PID only.
    pub fn signal(&self, signal: Signal) {
        let pid = self.pid();
        kill(as_pid(pid), signal).unwrap_or_else(|err| panic!("kill -{signal} {pid}: {err}"));
    }

    /// SIGTERM.
    pub fn terminate(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// The exit status if the process has exited, without waiting.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait on a child");
        }
        self.status
    }

    /// Wait up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Panic (with stderr) if the process has exited: a crash is never an acceptable answer.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exit_status() {
            panic!(
                "{} exited with {status}; stderr:\n{}",
                self.name,
                self.stderr()
            );
        }
    }

    fn stop(&mut self) {
        if self.exit_status().is_some() {
            return;
        }
        let _ = kill(as_pid(self.pid()), Signal::SIGTERM);
        if self.wait_exit(STOP_GRACE).is_none() {
            // Child::kill sends SIGKILL to this child's own PID only.
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            let stderr = self.stderr();
            let tail = &stderr[floor_char_boundary(&stderr, STDERR_SHOWN_BYTES)..];
            eprintln!(
                "--- stderr of {} (last {} bytes) ---\n{tail}",
                self.name,
                tail.len()
            );
        }
    }
}

/// `cmd` as `program args..`, the program by its file name.
fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program());
    let mut name = program
        .file_name()
        .unwrap_or(program.as_os_str())
        .to_string_lossy()
        .into_owned();
    for arg in cmd.get_args() {
        name.push(' ');
        name.push_str(&arg.to_string_lossy());
    }
    name
}

fn as_pid(pid: u32) -> Pid {
    // UNWRAP: Linux PIDs are at most 2^22 (`pid_max`), far below i32::MAX.
    Pid::from_raw(i32::try_from(pid).unwrap())
}

/// The byte offset where the last `keep` bytes of `text` start, moved forward to a character.
fn floor_char_boundary(text: &str, keep: usize) -> usize {
    let mut at = text.len().saturating_sub(keep);
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// Lines of `stdout` as they arrive. The reader keeps draining after the receiver is gone, so
/// the process never blocks on a full pipe.
fn read_lines(stdout: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    rx
}

/// Drain `stderr` into a buffer for the whole life of the process, keeping its last
/// [`STDERR_LIMIT_BYTES`], and mark the end of the pipe.
fn keep_tail(mut stderr: impl Read + Send + 'static) -> Arc<Tail> {
    let tail = Arc::new(Tail::default());
    let sink = Arc::clone(&tail);
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stderr.read(&mut chunk) {
            if let Ok(mut buf) = sink.kept.lock() {
                buf.extend_from_slice(&chunk[..n]);
                let len = buf.len();
                if len > STDERR_LIMIT_BYTES {
                    buf.drain(..len - STDERR_LIMIT_BYTES);
                }
            }
        }
        sink.closed.store(true, Ordering::Release);
    });
    tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe whose last bytes come some time after the first: a reader thread still copying
    /// what a process wrote just before it exited.
    struct Slow(Vec<&'static [u8]>);

    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            thread::sleep(Duration::from_millis(100));
            let part = self.0.remove(0);
            buf[..part.len()].copy_from_slice(part);
            Ok(part.len())
        }
    }

    #[test]
    fn stderr_read_after_the_exit_has_every_byte() {
        let mut p = Process::spawn(Command::new("true"));
        p.stderr = keep_tail(Slow(vec![b"first\n", b"last\n"]));
        assert!(p.wait_exit(Duration::from_secs(10)).is_some(), "true exits");
        assert_eq!(p.stderr(), "first\nlast\n");
    }
}
