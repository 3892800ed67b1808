//! The interactive prompt: multi-line SQL ended by `;`, history, and psql-style backslash commands.

use std::path::PathBuf;

use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use tessera_schemas::Catalog;

use crate::backend::Backend;
use crate::exit::{Failure, Outcome};
use crate::runner::{cancellable, split_statements, Sink};

const HELP: &str = "\
  SQL;            run a query across every trust (end it with ;)
  EXPLAIN SQL;    show the central plan and the fragment each trust receives
  \\d              list tables
  \\d TABLE        describe a table: columns, types, roles, domains
  \\timing         toggle query timing
  \\q              quit";

fn history_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".tessera_history"))
}

/// The prompt loop; returns when the user quits.
pub async fn run(backend: &Backend, mut sink: Sink) -> Outcome {
    let mut editor = DefaultEditor::new().map_err(|e| Failure::connection(format!("cannot start the prompt: {e}")))?;
    let history = history_file();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    println!("{}. Type \\? for help, \\q to quit.", backend.banner());
    let catalog = Catalog::builtin();
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "tessera=> " } else { "tessera-> " };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Failure::connection(format!("the prompt failed: {e}"))),
        };
        let trimmed = line.trim();
        if buffer.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            match meta(trimmed, &catalog, &mut sink) {
                Meta::Quit => break,
                Meta::Print(text) => println!("{text}"),
            }
            continue;
        }
        if trimmed.is_empty() && buffer.is_empty() {
            continue;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let text = std::mem::take(&mut buffer);
        let _ = editor.add_history_entry(text.trim());
        match split_statements(&text) {
            Ok(statements) => {
                for statement in statements {
                    if let Err(e) = cancellable(sink.run(backend, &statement)).await {
                        eprintln!("error: {}", e.message);
                        break;
                    }
                }
            }
            Err(e) => eprintln!("error: {e}"),
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

enum Meta {
    Quit,
    Print(String),
}

fn meta(command: &str, catalog: &Catalog, sink: &mut Sink) -> Meta {
    let mut words = command.split_whitespace();
    match (words.next(), words.next()) {
        (Some("\\q"), _) => Meta::Quit,
        (Some("\\?"), _) => Meta::Print(HELP.to_string()),
        (Some("\\timing"), _) => {
            sink.timing = !sink.timing;
            Meta::Print(format!("Timing is {}.", if sink.timing { "on" } else { "off" }))
        }
        (Some("\\d"), None) => Meta::Print(crate::describe::tables(catalog)),
        (Some("\\d"), Some(table)) => Meta::Print(crate::describe::table(catalog, table)),
        _ => Meta::Print(format!("unknown command {command}; type \\? for help")),
    }
}
