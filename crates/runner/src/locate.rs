//! Find where a key sits in a YAML file, for error messages about values that serde already accepted
//! (range checks, sweep overrides). Handles block-style mappings, which is how specs are written; a key
//! inside a flow mapping falls back to its first textual occurrence.

/// 1-based (line, column) of the key at `path` (e.g. `["model", "latent_dim"]`).
pub fn locate(source: &str, path: &[&str]) -> Option<(usize, usize)> {
    let mut stack: Vec<(usize, String)> = vec![];
    for (ln, line) in source.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("- ") || trimmed == "-" {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let Some(key) = key_of(trimmed) else { continue };
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, key));
        if stack.len() == path.len() && stack.iter().zip(path).all(|((_, k), p)| k == p) {
            return Some((ln + 1, indent + 1));
        }
    }
    // Fallback: the last path element anywhere in the text.
    let last = path.last()?;
    source.lines().enumerate().find_map(|(ln, l)| l.find(last).map(|c| (ln + 1, c + 1)))
}

/// The key of a `key: value` line, unquoted.
fn key_of(line: &str) -> Option<String> {
    let (k, _) = if let Some(rest) = line.strip_prefix('"') {
        let end = rest.find('"')?;
        return rest[end + 1..].trim_start().starts_with(':').then(|| rest[..end].to_string());
    } else if let Some(rest) = line.strip_prefix('\'') {
        let end = rest.find('\'')?;
        return rest[end + 1..].trim_start().starts_with(':').then(|| rest[..end].to_string());
    } else {
        line.split_once(':')?
    };
    let k = k.trim();
    (!k.is_empty() && !k.contains(' ')).then(|| k.to_string())
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn finds_nested_and_dotted_keys() {
        let src = "name: x\nmodel:\n  kind: vae\n  latent_dim: 4\nsweep:\n  grid:\n    model.latent_dim: [2, 4]\n";
        assert_eq!(locate(src, &["model", "latent_dim"]), Some((4, 3)));
        assert_eq!(locate(src, &["sweep", "grid", "model.latent_dim"]), Some((7, 5)));
        assert_eq!(locate(src, &["name"]), Some((1, 1)));
    }
}
