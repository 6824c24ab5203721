//! A permission question as the terminal client sees it: its options in the worker's order, and the agent's text
//! made safe to print. Both the renderer and the answering side read questions this way.

use serde_json::Value;

/// One option of a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub id: String,
    pub name: String,
    pub kind: String,
}

/// A question's options in the order the worker sent them, which gives the numbers a person picks by. An option
/// without an id cannot be answered with, so it is left out (and the numbers stay the same everywhere).
pub fn choices(request: &Value) -> Vec<Choice> {
    let options = request["options"].as_array().map(Vec::as_slice).unwrap_or_default();
    options
        .iter()
        .filter_map(|o| {
            let id = o["optionId"].as_str()?;
            Some(Choice {
                id: id.to_string(),
                name: o["name"].as_str().unwrap_or(id).to_string(),
                kind: o["kind"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

/// Text from the agent shown in a question: control characters (escape sequences) could redraw the terminal and
/// make a question look like another, so they are replaced.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn options_without_an_id_are_left_out() {
        let got = choices(&json!({"options": [{"name": "x"}, {"optionId": "a"}, 7]}));
        assert_eq!(
            got,
            vec![Choice {
                id: "a".into(),
                name: "a".into(),
                kind: String::new()
            }]
        );
        assert!(choices(&json!({"options": null})).is_empty());
    }
}
