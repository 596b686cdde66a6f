//! The `libernet` binary: logging set up, then `cli::run`. No logic here.

use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIBERNET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Log lines are formatted where they happen and written by one background thread,
    // in batches: a busy node writes one line per request, and a write(2) each on the
    // request path cost more than the rest of a small GET's logging. Not lossy: when
    // the queue is full, logging waits rather than drops lines.
    let (writer, _flush_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("libernet-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    libernet::cli::run()
}
