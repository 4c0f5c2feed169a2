//! The `watchpost` binary: everything is in the library; see `watchpost --help`.

fn main() -> std::process::ExitCode {
    watchpost_server::cli::main()
}
