//! The RFC 7644 §3.4.2.2 filter grammar.
//!
//! ```text
//! FILTER    = attrExp / logExp / valuePath / *1"not" "(" FILTER ")"
//! valuePath = attrPath "[" valFilter "]"
//! attrExp   = (attrPath SP "pr") / (attrPath SP compareOp SP compValue)
//! logExp    = FILTER SP ("and" / "or") SP FILTER
//! ```
//! Precedence is `not` > `and` > `or`; operators and keywords are
//! case-insensitive; attribute names may carry a schema URN prefix.

use std::fmt;

use serde_json::Value;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// equal
    Eq,
    /// not equal
    Ne,
    /// contains
    Co,
    /// starts with
    Sw,
    /// ends with
    Ew,
    /// greater than
    Gt,
    /// greater than or equal
    Ge,
    /// less than
    Lt,
    /// less than or equal
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }
}

/// `[urn:...:]attr[.sub]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// Schema URN prefix, if written.
    pub urn: Option<String>,
    /// Attribute name as written.
    pub attr: String,
    /// Sub-attribute name, if any.
    pub sub: Option<String>,
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl AttrPath {
    /// Parses `[urn:...:]attr[.sub]`. The URN is everything up to the last
    /// `:`; SCIM attribute names cannot contain `:`.
    pub fn parse(s: &str) -> Result<Self, FilterError> {
        let (urn, rest) = match s.rfind(':') {
            Some(i) if s[..i].to_ascii_lowercase().starts_with("urn:") => {
                (Some(s[..i].to_owned()), &s[i + 1..])
            }
            Some(_) => return Err(FilterError::new(format!("invalid attribute path {s:?}"))),
            None => (None, s),
        };
        let (attr, sub) = match rest.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (rest, None),
        };
        // RFC 7644: ATTRNAME = ALPHA *(nameChar), nameChar = "-" / "_" /
        // DIGIT / ALPHA. `$ref` is the one name outside it that RFC 7643
        // itself uses.
        let valid = |n: &str| {
            let mut chars = n.chars();
            n == "$ref"
                || (chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                    && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        };
        if !valid(attr) || sub.is_some_and(|s| !valid(s)) {
            return Err(FilterError::new(format!("invalid attribute path {s:?}")));
        }
        Ok(Self { urn, attr: attr.to_owned(), sub: sub.map(str::to_owned) })
    }
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attr op value`
    Compare {
        /// Attribute.
        path: AttrPath,
        /// Operator.
        op: CompareOp,
        /// Literal: string, number, boolean or null.
        value: Value,
    },
    /// `attr pr`
    Present(AttrPath),
    /// `a and b`
    And(Box<Filter>, Box<Filter>),
    /// `a or b`
    Or(Box<Filter>, Box<Filter>),
    /// `not (a)`
    Not(Box<Filter>),
    /// `attr[filter]` (the inner filter's paths are relative to `attr`)
    ValuePath {
        /// The multi-valued attribute.
        path: AttrPath,
        /// Filter over its values.
        filter: Box<Filter>,
    },
}

/// A filter did not parse (SCIM `invalidFilter`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

impl FilterError {
    fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Word(String),
    Str(String),
}

fn lex(input: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '[' => {
                tokens.push(Token::OpenBracket);
                i += 1;
            }
            ']' => {
                tokens.push(Token::CloseBracket);
                i += 1;
            }
            '"' => {
                // A JSON string: find the closing quote, honouring escapes,
                // and let serde_json decode the escapes.
                let start = i;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(FilterError::new("unterminated string literal"));
                }
                i += 1;
                let raw: String = chars[start..i].iter().collect();
                let decoded: String = serde_json::from_str(&raw)
                    .map_err(|_| FilterError::new(format!("invalid string literal {raw}")))?;
                tokens.push(Token::Str(decoded));
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !matches!(chars[i], ' ' | '\t' | '\n' | '\r' | '(' | ')' | '[' | ']' | '"')
                {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    /// Inside `attr[...]`: RFC 7644's valFilter has no value paths of its
    /// own (`emails[value[type eq "x"]]` is not a filter).
    in_value_filter: bool,
}

/// Nesting deeper than this is refused, so a hostile filter cannot exhaust
/// the stack.
const MAX_DEPTH: usize = 32;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::new("filter nests too deeply"));
        }
        let result = self.unary_inner();
        self.depth -= 1;
        result
    }

    fn unary_inner(&mut self) -> Result<Filter, FilterError> {
        if self.keyword("not") {
            self.pos += 1;
            if self.next() != Some(Token::Open) {
                return Err(FilterError::new("expected \"(\" after not"));
            }
            let inner = self.or()?;
            if self.next() != Some(Token::Close) {
                return Err(FilterError::new("expected \")\""));
            }
            return Ok(Filter::Not(Box::new(inner)));
        }
        match self.next() {
            Some(Token::Open) => {
                let inner = self.or()?;
                if self.next() != Some(Token::Close) {
                    return Err(FilterError::new("expected \")\""));
                }
                Ok(inner)
            }
            Some(Token::Word(word)) => self.attr_expression(&word),
            Some(other) => Err(FilterError::new(format!("unexpected {}", describe(&other)))),
            None => Err(FilterError::new("unexpected end of filter")),
        }
    }

    fn attr_expression(&mut self, word: &str) -> Result<Filter, FilterError> {
        let path = AttrPath::parse(word)?;
        if self.peek() == Some(&Token::OpenBracket) {
            if self.in_value_filter {
                return Err(FilterError::new(format!(
                    "a value filter cannot hold another one ({word}[...] inside [...])"
                )));
            }
            if path.sub.is_some() {
                return Err(FilterError::new(format!(
                    "a value filter applies to a multi-valued attribute, not to a sub-attribute ({word}[...])"
                )));
            }
            self.pos += 1;
            self.in_value_filter = true;
            let inner = self.or();
            self.in_value_filter = false;
            let inner = inner?;
            if self.next() != Some(Token::CloseBracket) {
                return Err(FilterError::new("expected \"]\""));
            }
            // `emails[type eq "work"].value eq "x"` (Entra ID) is read as
            // `emails[type eq "work" and value eq "x"]`.
            if let Some(Token::Word(next)) = self.peek()
                && let Some(sub) = next.strip_prefix('.')
            {
                let sub = sub.to_owned();
                self.pos += 1;
                self.in_value_filter = true;
                let tail = self.attr_expression(&sub);
                self.in_value_filter = false;
                let tail = tail?;
                return Ok(Filter::ValuePath {
                    path,
                    filter: Box::new(Filter::And(Box::new(inner), Box::new(tail))),
                });
            }
            return Ok(Filter::ValuePath { path, filter: Box::new(inner) });
        }
        let op = match self.next() {
            Some(Token::Word(op)) => op,
            _ => {
                return Err(FilterError::new(format!("expected an operator after {word}")));
            }
        };
        if op.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let op = CompareOp::parse(&op).ok_or_else(|| FilterError::new(format!("unknown operator {op:?}")))?;
        let value = match self.next() {
            Some(Token::Str(s)) => Value::String(s),
            Some(Token::Word(w)) => match w.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                number => {
                    serde_json::from_str::<serde_json::Number>(number).map(Value::Number).map_err(|_| {
                        FilterError::new(format!(
                            "invalid comparison value {number:?} (strings must be quoted)"
                        ))
                    })?
                }
            },
            _ => return Err(FilterError::new(format!("expected a value after {word}"))),
        };
        Ok(Filter::Compare { path, op, value })
    }
}

fn describe(t: &Token) -> String {
    match t {
        Token::Open => "\"(\"".into(),
        Token::Close => "\")\"".into(),
        Token::OpenBracket => "\"[\"".into(),
        Token::CloseBracket => "\"]\"".into(),
        Token::Word(w) => format!("{w:?}"),
        Token::Str(s) => format!("string {s:?}"),
    }
}

/// Parses a filter expression.
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    if input.len() > 4096 {
        return Err(FilterError::new("filter longer than 4096 bytes"));
    }
    let mut parser = Parser { tokens: lex(input)?, pos: 0, depth: 0, in_value_filter: false };
    if parser.tokens.is_empty() {
        return Err(FilterError::new("empty filter"));
    }
    let filter = parser.or()?;
    match parser.peek() {
        None => Ok(filter),
        Some(t) => Err(FilterError::new(format!("unexpected {} after a complete expression", describe(t)))),
    }
}
