//! Identifiers and single-line text: what may be stored, and when two
//! identifiers are the same.
//!
//! Identity providers send user names as people type them, and attackers
//! send them as they look. `ＣＡＲＯＬ` (fullwidth), `𝐂𝐚𝐫𝐨𝐥` (mathematical
//! bold), `Caro\u{200B}l` (a zero-width space) and `Carol` must not become
//! four identities, or a session request for one binds to another. So every
//! identifier is compared under one key, [`fold`]: NFKC (width and
//! compatibility forms, ligatures, composed accents), Unicode lower-casing,
//! NFKC again — the comparison RFC 8265's `UsernameCaseMapped` profile makes
//! (width mapping, case mapping, NFC), extended to compatibility forms. The
//! value as sent is kept for display.
//!
//! Characters that render as nothing or reorder what is around them (format
//! characters, bidi controls, default-ignorable code points) cannot be made
//! safe by a key: they are refused in identifiers ([`check_identifier`]).
//! C0 and C1 controls are refused in every single-line string
//! ([`check_single_line`]).

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// Why a string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextProblem {
    /// A C0 or C1 control character (NUL, newline, ESC, DEL, …).
    Control(char),
    /// A format, bidi-control or default-ignorable character in an
    /// identifier (zero-width space, soft hyphen, right-to-left override, …).
    Invisible(char),
    /// Longer than the limit, in characters.
    TooLong {
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for TextProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextProblem::Control(c) => write!(f, "contains the control character U+{:04X}", u32::from(*c)),
            TextProblem::Invisible(c) => write!(
                f,
                "contains U+{:04X}, an invisible formatting or direction character, which identifiers may not hold",
                u32::from(*c)
            ),
            TextProblem::TooLong { max } => write!(f, "is longer than {max} characters"),
        }
    }
}

/// C0 controls, DEL and C1 controls; `\t` is a control too.
pub fn is_control(c: char) -> bool {
    matches!(u32::from(c), 0x00..=0x1F | 0x7F..=0x9F)
}

/// Format characters (general category Cf), bidi controls, line and
/// paragraph separators and default-ignorable code points: characters
/// that render as nothing or change how their neighbours render.
pub fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// Refuses control characters and anything longer than `max` characters.
pub fn check_single_line(s: &str, max: usize) -> Result<(), TextProblem> {
    if let Some(c) = s.chars().find(|c| is_control(*c)) {
        return Err(TextProblem::Control(c));
    }
    if s.chars().count() > max {
        return Err(TextProblem::TooLong { max });
    }
    Ok(())
}

/// [`check_single_line`], and refuses invisible characters.
pub fn check_identifier(s: &str, max: usize) -> Result<(), TextProblem> {
    check_single_line(s, max)?;
    match s.chars().find(|c| is_invisible(*c)) {
        Some(c) => Err(TextProblem::Invisible(c)),
        None => Ok(()),
    }
}

/// The comparison key of an identifier: NFKC, lower-cased, NFKC again.
/// Two identifiers are the same exactly when their keys are equal; stores
/// index this key.
pub fn fold(s: &str) -> String {
    let lowered: String = s.nfkc().collect::<String>().to_lowercase();
    // Lower-casing can un-normalise (e.g. U+0130 → i + U+0307); one more
    // pass makes the key a fixed point.
    if lowered.is_ascii() { lowered } else { lowered.nfkc().collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_share_a_key() {
        let carol = fold("Carol");
        for look_alike in ["CAROL", "ＣＡＲＯＬ", "𝐂𝐚𝐫𝐨𝐥", "ｃarol"] {
            assert_eq!(fold(look_alike), carol, "{look_alike}");
        }
        assert_eq!(fold("ﬁona"), fold("fiona"));
        assert_eq!(fold("jose\u{301}"), fold("josé"));
        assert_eq!(fold("İ"), fold(&fold("İ")), "the key is a fixed point");
        assert_ne!(fold("carol"), fold("caro1"));
    }

    #[test]
    fn invisible_and_control_characters_are_refused() {
        for bad in ["caro\u{200B}l", "car\u{00AD}ol", "\u{202E}lorac", "carol\u{FE0F}", "a\u{2028}b"] {
            assert!(matches!(check_identifier(bad, 256), Err(TextProblem::Invisible(_))), "{bad:?}");
        }
        for bad in ["a\u{0}b", "a\nb", "a\rb", "a\u{1B}b", "a\u{7F}b", "a\u{85}b", "a\tb"] {
            assert!(matches!(check_single_line(bad, 256), Err(TextProblem::Control(_))), "{bad:?}");
            assert!(matches!(check_identifier(bad, 256), Err(TextProblem::Control(_))), "{bad:?}");
        }
        assert_eq!(check_identifier("ada@example.com", 256), Ok(()));
        assert_eq!(check_identifier("Zoë Ω 李", 256), Ok(()));
        assert_eq!(check_single_line("abcd", 3), Err(TextProblem::TooLong { max: 3 }));
    }
}
