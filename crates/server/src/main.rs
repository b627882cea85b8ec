//! The `gatehouse` binary.

/// mimalloc instead of the system allocator: a request allocates and frees many small buffers
/// (headers, JSON, SQL rows) across worker threads, which glibc's malloc serves slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gatehouse_server::cli::main()
}
