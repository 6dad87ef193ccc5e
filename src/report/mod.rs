//! Rendering. Plans as text, JSON or DOT ([`plan`]); the executor's event stream as plain
//! lines ([`plain`]), a live terminal display ([`tty`]) or NDJSON ([`json`]); the end-of-run
//! summary ([`summary`]); `status` ([`status`]) and `gc` ([`gc`]) reports, all tables drawn by
//! one renderer ([`table`]). Steps never print: everything goes through these, masked.

// The command line and the renderers are the only code that prints (`[workspace.lints]`
// denies `print_stdout`/`print_stderr` everywhere else).
#![allow(clippy::print_stdout, clippy::print_stderr)]
pub mod gc;
pub mod json;
pub mod plain;
pub mod plan;
pub mod status;
pub mod summary;
pub mod table;
pub mod tty;
pub mod watch;

use std::sync::Arc;

use crate::exec::Sink;

/// A sink sending every event to each of `sinks`.
pub fn fan_out(sinks: Vec<Sink>) -> Sink {
    Arc::new(move |event| {
        for s in &sinks {
            s(event);
        }
    })
}

/// A size as reports show it, in binary units with one decimal (`1023 B`, `1.5 KiB`,
/// `184.0 KiB`), as `bytesize` writes it.
pub fn human_bytes(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_are_human() {
        let h = super::human_bytes;
        assert_eq!(h(0), "0 B");
        assert_eq!(h(1023), "1023 B");
        assert_eq!(h(1536), "1.5 KiB");
        assert_eq!(h(188_416), "184.0 KiB");
        assert_eq!(h(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(h(1_048_575), "1024.0 KiB");
    }
}
