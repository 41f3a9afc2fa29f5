//! Image commands: `berth build/push/pull/images/tag/rmi/login`.

/// Arguments of `berth build`.
#[derive(clap::Args)]
pub struct BuildArgs {}

/// Runs `berth build`.
pub fn build(_args: BuildArgs) -> anyhow::Result<()> {
    anyhow::bail!("`berth build` is not available in this build yet")
}

/// Arguments of `berth push`.
#[derive(clap::Args)]
pub struct PushArgs {}

/// Runs `berth push`.
pub fn push(_args: PushArgs) -> anyhow::Result<()> {
    anyhow::bail!("`berth push` is not available in this build yet")
}

/// Arguments of `berth pull`.
#[derive(clap::Args)]
pub struct PullArgs {}

/// Runs `berth pull`.
pub fn pull(_args: PullArgs) -> anyhow::Result<()> {
    anyhow::bail!("`berth pull` is not available in this build yet")
}

/// Arguments of `berth images`.
#[derive(clap::Args)]
pub struct ImagesArgs {}

/// Runs `berth images`.
pub fn images(_args: ImagesArgs) -> anyhow::Result<()> {
    anyhow::bail!("`berth images` is not available in this build yet")
}

/// Arguments of `berth tag`.
#[derive(clap::Args)]
pub struct TagArgs {}

/// Runs `berth tag`.
pub fn tag(_args: TagArgs) -> anyhow::Result<()> {
    anyhow::bail!("`berth tag` is not available in this build yet")
}

/// Arguments of `berth rmi`.
#[derive(clap::Args)]
pub struct RmiArgs {}

/// Runs `berth rmi`.
pub fn rmi(_args: RmiArgs) -> anyhow::Result<()> {
    anyhow::bail!("`berth rmi` is not available in this build yet")
}

/// Arguments of `berth login`.
#[derive(clap::Args)]
pub struct LoginArgs {}

/// Runs `berth login`.
pub fn login(_args: LoginArgs) -> anyhow::Result<()> {
    anyhow::bail!("`berth login` is not available in this build yet")
}

