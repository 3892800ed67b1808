//! The users file: a trust's analysts (or a service's users), each with an argon2id hash of their
//! password, never the password itself.
//!
//! ```toml
//! [[users]]
//! name = "alice"
//! argon2id = "$argon2id$v=19$m=19456,t=2,p=1$…"
//! ```

use std::path::{Path, PathBuf};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

/// Longest user name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Shortest password accepted by `tessera user add`.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// One user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    /// The PHC string of the password's argon2id hash.
    pub argon2id: String,
    /// Projects the user may ask for (the first is their default); used by `tessera serve`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<String>,
}

/// The users file, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default)]
    pub users: Vec<User>,
}

/// Hashes `password` with argon2id (OWASP's parameters: 19 MiB, 2 passes) and a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// A hash no password matches, checked when the user is unknown so that a wrong name costs as
/// long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&crate::access::random_secret()).unwrap_or_default())
}

/// Whether `password` matches the PHC string `hash`.
fn matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

/// Checks a user name: letters, digits and `.-_@`, at most [`MAX_NAME_CHARS`].
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a user name: use up to {MAX_NAME_CHARS} letters, digits, '.', '-', '_' or '@'"
        ))
    }
}

impl UsersFile {
    /// Reads `path`; a missing file is an error naming it.
    pub fn load(path: &Path) -> Result<UsersFile, String> {
        let file: UsersFile = tessera_schemas::toml_file::read_toml(path).map_err(|e| e.to_string())?;
        for user in &file.users {
            check_name(&user.name).map_err(|e| format!("{}: {e}", path.display()))?;
            PasswordHash::new(&user.argon2id)
                .map_err(|e| format!("{}: user `{}`: not an argon2id hash ({e})", path.display(), user.name))?;
        }
        Ok(file)
    }

    /// Reads `path`, or an empty list when it does not exist yet.
    pub fn load_or_empty(path: &Path) -> Result<UsersFile, String> {
        match path.exists() {
            true => UsersFile::load(path),
            false => Ok(UsersFile::default()),
        }
    }

    /// Writes the file atomically, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = format!(
            "# Tessera users: argon2id hashes, managed with `tessera user add|remove|list`.\n\n{}",
            toml::to_string_pretty(self).map_err(|e| e.to_string())?
        );
        let temporary = PathBuf::from(format!("{}.tmp", path.display()));
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temporary).map_err(fail)?;
            file.write_all(text.as_bytes()).map_err(fail)?;
            file.sync_all().map_err(fail)?;
        }
        std::fs::rename(&temporary, path).map_err(fail)
    }

    /// Adds `name` with `password`, or sets a new password when `name` exists; says which.
    pub fn add(&mut self, name: &str, password: &str, projects: Vec<String>) -> Result<&'static str, String> {
        check_name(name)?;
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(format!("the password must be at least {MIN_PASSWORD_CHARS} characters"));
        }
        let user = User {
            name: name.to_string(),
            argon2id: hash_password(password)?,
            projects,
        };
        match self.users.iter_mut().find(|u| u.name == name) {
            Some(existing) => {
                *existing = user;
                Ok("updated")
            }
            None => {
                self.users.push(user);
                Ok("added")
            }
        }
    }

    /// Removes `name`; whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.users.len();
        self.users.retain(|u| u.name != name);
        self.users.len() != before
    }

    /// The user, when `password` is theirs. Costs one argon2id check whether or not the user exists.
    pub fn verify(&self, name: &str, password: &str) -> Option<&User> {
        match self.users.iter().find(|u| u.name == name) {
            Some(user) => matches(&user.argon2id, password).then_some(user),
            None => {
                matches(decoy_hash(), password);
                None
            }
        }
    }

    /// The password hash of `name`, if they are (still) a user.
    pub fn hash_of(&self, name: &str) -> Option<&str> {
        self.users.iter().find(|u| u.name == name).map(|u| u.argon2id.as_str())
    }
}
