use std::process::ExitCode;

fn main() -> ExitCode {
    keyward::cli::main()
}
