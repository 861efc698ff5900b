use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

/// Prints the License CRD (the same YAML as `crds/licenses.keyward.dev.yaml`).
pub fn run(_: Args) -> anyhow::Result<ExitCode> {
    print!("{}", crate::api::crd_yaml());
    Ok(ExitCode::SUCCESS)
}
