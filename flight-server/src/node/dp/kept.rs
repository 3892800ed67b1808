//! The answers a trust has given, kept beside its ledger (`<ledger>.answers/`, one Arrow IPC
//! file per answer, named by the answer's key), so the same question gets the same answer
//! after a restart too, and asking again never averages the noise away. Each file is written
//! whole (a temporary file, flushed, then renamed) before the answer leaves the node; a file
//! that cannot be read is treated as absent, and the question is then refused as answered
//! before (its charge is in the ledger), never answered with fresh noise for the same charge.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;

use crate::node::query::Answer;

/// Answers by key, in memory and on disk.
pub struct Kept {
    dir: PathBuf,
    memory: Mutex<HashMap<String, Answer>>,
}

impl Kept {
    /// The answers kept beside `ledger`.
    pub fn open(ledger: &Path) -> Result<Kept, String> {
        let dir = ledger.with_extension("answers");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Kept {
            dir,
            memory: Mutex::new(HashMap::new()),
        })
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        // Keys are hex digests; anything else never names a file.
        key.bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| self.dir.join(format!("{key}.arrow")))
    }

    /// The answer given under `key`, if any.
    pub fn get(&self, key: &str) -> Option<Answer> {
        if let Some(answer) = self.memory.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
            return Some(answer.clone());
        }
        let reader = FileReader::try_new(File::open(self.path(key)?).ok()?, None).ok()?;
        let schema = reader.schema();
        let batches = reader.collect::<Result<Vec<_>, _>>().ok()?;
        let answer = Answer {
            schema,
            rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
            batches,
        };
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), answer.clone());
        Some(answer)
    }

    /// Keeps `answer` under `key`, durably, before it is sent.
    pub fn keep(&self, key: &str, answer: &Answer) -> Result<(), String> {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), answer.clone());
        let path = self.path(key).ok_or("an answer key is not a digest")?;
        let temporary = path.with_extension("arrow.partial");
        let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", temporary.display());
        let file = File::create(&temporary).map_err(|e| fail(&e))?;
        let mut writer = FileWriter::try_new(file, &answer.schema).map_err(|e| fail(&e))?;
        for batch in &answer.batches {
            writer.write(batch).map_err(|e| fail(&e))?;
        }
        writer.finish().map_err(|e| fail(&e))?;
        let mut file = writer.into_inner().map_err(|e| fail(&e))?;
        file.flush().map_err(|e| fail(&e))?;
        file.sync_all().map_err(|e| fail(&e))?;
        std::fs::rename(&temporary, &path).map_err(|e| fail(&e))
    }
}
