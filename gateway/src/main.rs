//! The `gateway` binary: see the library's `main`.

use std::process::ExitCode;

/// The gateway allocates with mimalloc: its hot paths allocate small buffers
/// on many threads (tokio workers, librdkafka callbacks), where glibc's
/// allocator spent about a third of the CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    gateway::main(std::env::args_os())
}
