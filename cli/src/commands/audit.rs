//! `tessera audit verify FILE`.

use std::path::Path;

use tessera_node::audit::{verify as verify_log, AuditError};

use crate::exit::{Failure, Outcome};

pub fn verify(file: &Path) -> Outcome {
    match verify_log(file) {
        Ok(v) => {
            println!(
                "{}: intact, {} entries; last line SHA-256 {}",
                file.display(),
                v.lines,
                v.head_hash
            );
            Ok(())
        }
        Err(e @ AuditError::Tampered { .. }) => Err(Failure::query(format!("audit log tampered: {e}"))),
        Err(e) => Err(Failure::connection(e)),
    }
}
