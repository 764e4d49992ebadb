//! Turns proto comments into rustdoc text that is safe to render.
//!
//! Proto comments are written for people, not for rustdoc. Left as they are,
//! an indented line becomes a Rust code block (a doctest that fails to
//! compile), `[Foo]` becomes a broken intra-doc link, `<name>` becomes an
//! unclosed HTML tag and a bare URL trips `rustdoc::bare_urls`. This module
//! rewrites the comment so that it renders as the author meant it and adds no
//! doctest and no rustdoc warning:
//!
//! - indented code blocks and fenced blocks become ```` ```text ```` fences;
//! - outside code, `[`, `]` and `<` are escaped, bare URLs become autolinks,
//!   and unmatched backticks are escaped;
//! - inline code spans, inline links to `http(s)` URLs, autolinks and
//!   backslash escapes already in the comment are kept.

/// Width of a tab when measuring indentation, as CommonMark counts it.
const TAB_WIDTH: usize = 4;

/// Rewrites comment `lines` (as found in the descriptor's source info) into
/// rustdoc lines. Leading and trailing blank lines are dropped.
pub(crate) fn sanitize(lines: &[String]) -> Vec<String> {
    let lines: Vec<String> = lines
        .iter()
        .flat_map(|l| l.split('\n'))
        // A bare carriage return is not allowed in a doc comment.
        .map(|l| expand_leading_tabs(l.replace('\r', " ").trim_end()))
        .collect();
    let start = lines.iter().position(|l| !l.is_empty());
    let end = lines.iter().rposition(|l| !l.is_empty());
    let (Some(start), Some(end)) = (start, end) else {
        return Vec::new();
    };
    let lines = &lines[start..=end];
    let common = lines
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| indent_of(l))
        .min()
        .unwrap_or(0);
    let lines: Vec<&str> = lines
        .iter()
        .map(|l| if l.is_empty() { "" } else { &l[common..] })
        .collect();

    let mut out = Vec::with_capacity(lines.len() + 4);
    let mut state = State::Text;
    // The lines of the indented code block being read, and the blank lines
    // after it (inside the block if more code follows).
    let mut code: Vec<String> = Vec::new();
    let mut pending_blanks = 0usize;
    // Whether a paragraph is open: an indented line continues it rather
    // than starting a code block.
    let mut para_open = false;
    for line in lines {
        match state {
            State::Fenced { marker, len } => {
                if is_closing_fence(line, marker, len) {
                    out.push(fence(marker, len));
                    state = State::Text;
                    para_open = false;
                } else {
                    out.push(line.to_string());
                }
                continue;
            }
            State::Indented => {
                if line.is_empty() {
                    pending_blanks += 1;
                    continue;
                }
                if indent_of(line) >= 4 {
                    code.extend(std::iter::repeat_n(String::new(), pending_blanks));
                    pending_blanks = 0;
                    code.push(line[4..].to_string());
                    continue;
                }
                push_code_block(&mut out, std::mem::take(&mut code));
                out.extend(std::iter::repeat_n(String::new(), pending_blanks));
                pending_blanks = 0;
                state = State::Text;
            }
            State::Text => {}
        }

        // Text state.
        if line.is_empty() {
            out.push(String::new());
            para_open = false;
            continue;
        }
        let indent = indent_of(line);
        if indent >= 4 && !para_open {
            code.push(line[4..].to_string());
            state = State::Indented;
            continue;
        }
        if let Some((marker, len)) = opening_fence(line) {
            // The info string is replaced: whatever language it named, the
            // block must never be compiled as a doctest.
            out.push(format!("{}text", fence(marker, len)));
            state = State::Fenced { marker, len };
            continue;
        }
        out.push(escape_inline(line));
        para_open = !closes_paragraph(line);
    }
    match state {
        State::Text => {}
        State::Indented => push_code_block(&mut out, code),
        State::Fenced { marker, len } => out.push(fence(marker, len)),
    }
    out
}

/// Writes an indented code block as a `text` fence, longer than any run of
/// backticks inside so that nothing in the block can close it early.
fn push_code_block(out: &mut Vec<String>, code: Vec<String>) {
    let longest_run = code
        .iter()
        .flat_map(|l| l.split(|c| c != '`'))
        .map(str::len)
        .max()
        .unwrap_or(0);
    let ticks = fence('`', (longest_run + 1).max(3));
    out.push(format!("{ticks}text"));
    out.extend(code);
    out.push(ticks);
}

#[derive(Clone, Copy)]
enum State {
    Text,
    Indented,
    Fenced { marker: char, len: usize },
}

/// Whether `line` is a heading or a rule, after which no paragraph is open.
/// (Erring towards "yes" is safe: it only turns more indented lines into
/// text blocks.)
fn closes_paragraph(line: &str) -> bool {
    let t = line.trim();
    let hashes = t.len() - t.trim_start_matches('#').len();
    let atx = (1..=6).contains(&hashes) && t[hashes..].chars().next().is_none_or(|c| c == ' ');
    atx || t.chars().all(|c| "-=*_ ".contains(c))
}

fn fence(marker: char, len: usize) -> String {
    std::iter::repeat_n(marker, len).collect()
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn expand_leading_tabs(line: &str) -> String {
    let body = line.trim_start_matches([' ', '\t']);
    let mut width = 0;
    for c in line[..line.len() - body.len()].chars() {
        width = if c == '\t' {
            (width / TAB_WIDTH + 1) * TAB_WIDTH
        } else {
            width + 1
        };
    }
    format!("{}{body}", " ".repeat(width))
}

/// A line opening a fenced code block: up to three spaces, then three or
/// more backticks (with no backtick in the info string) or tildes.
fn opening_fence(line: &str) -> Option<(char, usize)> {
    if indent_of(line) > 3 {
        return None;
    }
    let rest = line.trim_start_matches(' ');
    let marker = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = rest.len() - rest.trim_start_matches(marker).len();
    if len < 3 {
        return None;
    }
    if marker == '`' && rest[len..].contains('`') {
        return None;
    }
    Some((marker, len))
}

fn is_closing_fence(line: &str, marker: char, len: usize) -> bool {
    if indent_of(line) > 3 {
        return false;
    }
    let rest = line.trim_start_matches(' ');
    let run = rest.len() - rest.trim_start_matches(marker).len();
    run >= len && rest[run..].trim().is_empty()
}

/// Escapes one line of paragraph text.
fn escape_inline(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                // An escape the author wrote keeps its meaning.
                out.push('\\');
                if let Some(&next) = chars.get(i + 1) {
                    if next.is_ascii_punctuation() {
                        out.push(next);
                        i += 1;
                    }
                }
                i += 1;
            }
            '`' => {
                let run = run_len(&chars, i, '`');
                match find_closing_ticks(&chars, i + run, run) {
                    Some(close) => {
                        out.extend(&chars[i..close + run]);
                        i = close + run;
                    }
                    None => {
                        for _ in 0..run {
                            out.push_str("\\`");
                        }
                        i += run;
                    }
                }
            }
            '<' => match autolink_end(&chars, i) {
                Some(end) => {
                    out.extend(&chars[i..end]);
                    i = end;
                }
                None => {
                    out.push_str("\\<");
                    i += 1;
                }
            },
            '[' => match inline_link(&chars, i) {
                Some((text_end, end)) => {
                    out.push('[');
                    let text: String = chars[i + 1..text_end].iter().collect();
                    out.push_str(&escape_inline(&text));
                    out.extend(&chars[text_end..end]);
                    i = end;
                }
                None => {
                    out.push_str("\\[");
                    i += 1;
                }
            },
            ']' => {
                out.push_str("\\]");
                i += 1;
            }
            'h' if starts_url(&chars, i) && (i == 0 || !chars[i - 1].is_alphanumeric()) => {
                let end = url_end(&chars, i);
                out.push('<');
                out.extend(&chars[i..end]);
                out.push('>');
                i = end;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn run_len(chars: &[char], at: usize, c: char) -> usize {
    chars[at..].iter().take_while(|&&x| x == c).count()
}

/// The start of the next run of exactly `len` backticks at or after `from`.
fn find_closing_ticks(chars: &[char], from: usize, len: usize) -> Option<usize> {
    let mut i = from;
    while i < chars.len() {
        if chars[i] == '`' {
            let run = run_len(chars, i, '`');
            if run == len {
                return Some(i);
            }
            i += run;
        } else {
            i += 1;
        }
    }
    None
}

fn starts_url(chars: &[char], at: usize) -> bool {
    let rest: String = chars[at..].iter().take(8).collect();
    (rest.starts_with("http://") && chars.len() > at + 7)
        || (rest.starts_with("https://") && chars.len() > at + 8)
}

/// The end (exclusive) of a bare URL starting at `at`.
fn url_end(chars: &[char], at: usize) -> usize {
    let mut end = at;
    while end < chars.len() && !chars[end].is_whitespace() && !"<>[]\"`|".contains(chars[end]) {
        end += 1;
    }
    // Sentence punctuation after a URL is not part of it.
    while end > at && ".,;:!?'".contains(chars[end - 1]) {
        end -= 1;
    }
    let opens = chars[at..end].iter().filter(|&&c| c == '(').count();
    let closes = chars[at..end].iter().filter(|&&c| c == ')').count();
    if closes > opens && chars[end - 1] == ')' {
        end -= 1;
    }
    end
}

/// An autolink `<http://...>` at `at`: its end (exclusive).
fn autolink_end(chars: &[char], at: usize) -> Option<usize> {
    if !starts_url(chars, at + 1) {
        return None;
    }
    let mut i = at + 1;
    while i < chars.len() {
        match chars[i] {
            '>' => return Some(i + 1),
            c if c.is_whitespace() || c == '<' => return None,
            _ => i += 1,
        }
    }
    None
}

/// An inline link `[text](http://...)` at `at`: the index of its `]` and its
/// end (exclusive). Links to anything but a web URL are escaped instead,
/// as rustdoc would try to resolve them.
fn inline_link(chars: &[char], at: usize) -> Option<(usize, usize)> {
    let close = at + 1 + chars[at + 1..].iter().position(|&c| c == ']')?;
    if chars[at + 1..close].iter().any(|&c| c == '[' || c == '`') || close == at + 1 {
        return None;
    }
    if chars.get(close + 1) != Some(&'(') || !starts_url(chars, close + 2) {
        return None;
    }
    let mut i = close + 2;
    while i < chars.len() {
        match chars[i] {
            ')' => return Some((close, i + 1)),
            c if c.is_whitespace() || c == '(' || c == '<' || c == '>' => return None,
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Vec<String> {
        sanitize(&text.lines().map(str::to_string).collect::<Vec<_>>())
    }

    #[test]
    fn plain_text_is_kept_without_common_indent() {
        assert_eq!(run(" Hello\n world."), ["Hello", "world."]);
    }

    #[test]
    fn indented_block_becomes_text_fence() {
        assert_eq!(
            run(" Example:\n\n     let x = 1;\n\n     x + 1\n After."),
            [
                "Example:",
                "",
                "```text",
                "let x = 1;",
                "",
                "x + 1",
                "```",
                "After."
            ]
        );
    }

    #[test]
    fn indented_block_at_end_and_after_heading() {
        assert_eq!(
            run(" Code:\n\n     fn main() {}"),
            ["Code:", "", "```text", "fn main() {}", "```"]
        );
        assert_eq!(run(" # Title\n     x"), ["# Title", "```text", "x", "```"]);
    }

    #[test]
    fn uniformly_indented_comment_is_text() {
        assert_eq!(run("     fn main() {}"), ["fn main() {}"]);
    }

    #[test]
    fn continuation_line_is_not_code() {
        assert_eq!(run(" - item\n     more"), ["- item", "    more"]);
    }

    #[test]
    fn fences_lose_their_language_and_get_closed() {
        assert_eq!(
            run(" ```rust\n fn x() {}\n ```\n ~~~~\n [a]"),
            ["```text", "fn x() {}", "```", "~~~~text", "[a]", "~~~~"]
        );
    }

    #[test]
    fn brackets_tags_and_ticks_are_escaped_outside_code() {
        assert_eq!(
            run(" See [Foo][bar.Baz] and <b>bold</b>, `a[0] <x>` and ` lone"),
            [r"See \[Foo\]\[bar.Baz\] and \<b>bold\</b>, `a[0] <x>` and \` lone"]
        );
    }

    #[test]
    fn urls_become_autolinks_and_links_are_kept() {
        assert_eq!(
            run(" Go to https://example.com/a_(b). Or <http://x.y> or [the [doc]](https://d.e/f)."),
            [
                r"Go to <https://example.com/a_(b)>. Or <http://x.y> or \[the \[doc\]\](<https://d.e/f>)."
            ]
        );
        assert_eq!(run(" [doc](https://d.e/f)"), ["[doc](https://d.e/f)"]);
        assert_eq!(run(" (see http://a.b/c)"), ["(see <http://a.b/c>)"]);
    }

    #[test]
    fn author_escapes_are_kept() {
        assert_eq!(run(r" a \< b \[c\] d\e"), [r"a \< b \[c\] d\e"]);
    }

    #[test]
    fn fences_inside_indented_code_cannot_close_it() {
        assert_eq!(
            run(" Code:\n\n     ```\n     x\n     ````rust"),
            ["Code:", "", "`````text", "```", "x", "````rust", "`````"]
        );
    }

    #[test]
    fn tabs_count_as_indentation() {
        assert_eq!(run("x\n\n\tcode"), ["x", "", "```text", "code", "```"]);
    }

    #[test]
    fn blank_comment_is_empty() {
        assert!(run("\n  \n").is_empty());
    }
}
