//! `tessera user add|remove|list --file users.toml`: accounts with argon2id password hashes.

use std::io::BufRead;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use tessera_node::access::users::UsersFile;

use crate::exit::{Failure, Outcome};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user, or set a new password for an existing one (the password is read from stdin).
    Add(AddArgs),
    /// Remove a user: their sign-ins and sessions stop working at once.
    Remove(NameArgs),
    /// List the users (names and projects; never hashes).
    List(FileArgs),
}

#[derive(Args)]
pub struct FileArgs {
    /// The users file (e.g. a trust's users.toml); created by `add` when missing.
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Args)]
pub struct NameArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// The user name.
    pub name: String,
}

#[derive(Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub user: NameArgs,
    /// Read the password from the first line of standard input (its newline is not part of it).
    #[arg(long, required = true)]
    pub password_stdin: bool,
    /// Projects the user may ask for, comma-separated (the first is their default).
    #[arg(long, value_delimiter = ',')]
    pub projects: Vec<String>,
}

pub fn run(command: UserCommand) -> Outcome {
    match command {
        UserCommand::Add(args) => {
            let path = &args.user.file.file;
            let mut users = UsersFile::load_or_empty(path).map_err(Failure::query)?;
            let password = read_password()?;
            let projects = args
                .projects
                .iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect();
            let what = users
                .add(&args.user.name, &password, projects)
                .map_err(Failure::query)?;
            users.save(path).map_err(Failure::query)?;
            println!("{what} user {} in {}", args.user.name, path.display());
            Ok(())
        }
        UserCommand::Remove(args) => {
            let path = &args.file.file;
            let mut users = UsersFile::load(path).map_err(Failure::query)?;
            if !users.remove(&args.name) {
                return Err(Failure::query(format!("{}: no user {}", path.display(), args.name)));
            }
            users.save(path).map_err(Failure::query)?;
            println!("removed user {} from {}", args.name, path.display());
            Ok(())
        }
        UserCommand::List(args) => {
            let users = UsersFile::load(&args.file).map_err(Failure::query)?;
            if users.users.is_empty() {
                println!("no users in {}", args.file.display());
            }
            for user in &users.users {
                match user.projects.is_empty() {
                    true => println!("{}", user.name),
                    false => println!("{} (projects: {})", user.name, user.projects.join(", ")),
                }
            }
            Ok(())
        }
    }
}

/// The first line of standard input, without its line ending.
pub fn read_password() -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::query(format!("cannot read the password from stdin: {e}")))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(Failure::query(
            "no password on stdin (e.g. `printf '%s\\n' \"$PW\" | tessera user add …`)",
        ));
    }
    Ok(password.to_string())
}
