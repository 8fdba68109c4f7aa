//! `bandsync-cli mint-token`: prints a session token for a server in the authenticated
//! mode, signed with its `JWT_SECRET` (HS256) or with the private half of its
//! `JWT_PUBLIC_KEY` (RS256 / ES256).

use bandsync_client::args::parse_secs;
use bandsync_client::protocol::validate;
use bandsync_client::token::{mint, SigningKey, TokenSpec};
use clap::{Args, ValueEnum};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    /// May take the leader seat (and follow).
    Leader,
    /// May follow and listen, never lead.
    Follower,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("signing").required(true).args(["secret", "key"])))]
pub struct MintArgs {
    /// The server's JWT_SECRET (HS256).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// A PEM private key file (RSA: RS256; P-256 EC in PKCS#8: ES256) whose public key is
    /// the server's JWT_PUBLIC_KEY.
    #[arg(long, value_name = "FILE")]
    pub key: Option<std::path::PathBuf>,
    /// The session the token opens, or `*` for every session.
    #[arg(long)]
    pub session: String,
    /// Whether the holder may take the leader seat.
    #[arg(long, value_enum)]
    pub role: TokenRole,
    /// How long the token is valid, seconds (fractions are cut).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "3600")]
    pub ttl_secs: Duration,
    /// Who holds the token (`sub`): a resume token only works with a token of the same.
    #[arg(long)]
    pub sub: Option<String>,
}

pub fn run(args: &MintArgs) -> anyhow::Result<()> {
    if args.session != "*" {
        validate::session_id(&args.session)
            .map_err(|e| anyhow::anyhow!("--session: {}", e.message))?;
    }
    if args.ttl_secs.as_secs() == 0 {
        anyhow::bail!("--ttl-secs must be at least 1");
    }
    let key = match (&args.secret, &args.key) {
        (Some(secret), _) => SigningKey::Secret(secret.clone()),
        (None, Some(path)) => SigningKey::Pem(
            std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?,
        ),
        (None, None) => anyhow::bail!("give --secret or --key"),
    };
    let spec = TokenSpec {
        session: args.session.clone(),
        leader: args.role == TokenRole::Leader,
        ttl: args.ttl_secs,
        sub: args.sub.clone(),
    };
    println!("{}", mint(&key, &spec)?);
    Ok(())
}
