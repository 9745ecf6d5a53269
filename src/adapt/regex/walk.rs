//! The forward walk of the `regex` format (see the parent module's docs): a user pattern of
//! a common subset compiled to a tree that matches a line in one forward pass, with the spans
//! the regex engine would report, or says it cannot be sure and leaves the line to the engine.

use regex::Regex;

/// The forward walk: a pattern of the subset described in the module docs, as a tree.
#[derive(Debug, Clone)]
enum Node {
    /// These bytes, exactly.
    Lit(Box<[u8]>),
    /// `min..=max` characters of `class`, greedily (`max` is `u32::MAX` for no bound).
    Rep { class: Class, min: u32, max: u32 },
    /// A group: its alternatives in order; `slot` is its capture index if it captures,
    /// `inner` the capture indices it contains (its own included), cleared when an
    /// alternative is abandoned; `optional` for a trailing `?`.
    Group {
        slot: Option<usize>,
        inner: std::ops::Range<usize>,
        alts: Vec<Vec<Node>>,
        optional: bool,
    },
    /// `$` (no multi-line flag): the end of the line.
    End,
}

/// A character class: membership of each ASCII byte, and what it says of every non-ASCII
/// character at once.
#[derive(Debug, Clone, Copy)]
struct Class {
    ascii: u128,
    non_ascii: NonAscii,
    /// For a class that takes every character but one to three ASCII bytes (`[^ ]`, `[^"]`,
    /// `.`), those bytes: an unbounded run is then one `memchr` call.
    stops: Option<([u8; 3], usize)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonAscii {
    /// Every non-ASCII character is in the class (`[^ ]`, `.`).
    All,
    /// None is (`[A-Z]`, `[0-9]`).
    None,
    /// Some are, by Unicode tables the walk does not carry (`\d`, `\S`, `\w`): meeting one
    /// hands the line to the regex engine.
    Unknown,
}

impl Class {
    fn new(ascii: u128, non_ascii: NonAscii) -> Class {
        let mut stops = None;
        if non_ascii == NonAscii::All && (!ascii).count_ones() <= 3 {
            let mut s = [0u8; 3];
            let mut n = 0;
            for b in 0..128u8 {
                if ascii & (1 << b) == 0 {
                    s[n] = b;
                    n += 1;
                }
            }
            stops = Some((s, n));
        }
        Class {
            ascii,
            non_ascii,
            stops,
        }
    }
}

/// Why the walk stopped short of a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Miss {
    /// Before any choice point: every way through the failing part fails, so the caller may
    /// try its next alternative.
    Clean,
    /// After a choice point, or on a character the walk cannot classify: only the regex
    /// engine can tell.
    GiveUp,
}

/// Capture spans of a walk, by capture index.
pub(super) type Spans = [Option<(usize, usize)>];

/// Runs `nodes` from `at`: the end and whether a choice point with lower-priority options
/// was passed.
fn walk_seq(nodes: &[Node], b: &[u8], mut at: usize, spans: &mut Spans) -> Result<(usize, bool), Miss> {
    let mut chose = false;
    for n in nodes {
        match walk_node(n, b, at, spans) {
            Ok((next, c)) => {
                at = next;
                chose |= c;
            }
            Err(Miss::Clean) if !chose => return Err(Miss::Clean),
            Err(_) => return Err(Miss::GiveUp),
        }
    }
    Ok((at, chose))
}

fn walk_node(n: &Node, b: &[u8], at: usize, spans: &mut Spans) -> Result<(usize, bool), Miss> {
    match n {
        Node::Lit(lit) => match b.get(at..at + lit.len()) {
            Some(s) if s == &lit[..] => Ok((at + lit.len(), false)),
            _ => Err(Miss::Clean),
        },
        Node::End => match at == b.len() {
            true => Ok((at, false)),
            false => Err(Miss::Clean),
        },
        Node::Rep { class, min, max } => {
            let (end, count) = run(class, *min, *max, b, at)?;
            if count < *min {
                return Err(Miss::Clean);
            }
            Ok((end, count > *min))
        }
        Node::Group {
            slot,
            inner,
            alts,
            optional,
        } => {
            for (i, alt) in alts.iter().enumerate() {
                match walk_seq(alt, b, at, spans) {
                    Ok((end, chose)) => {
                        if let Some(s) = slot {
                            spans[*s] = Some((at, end));
                        }
                        return Ok((end, chose || *optional || i + 1 < alts.len()));
                    }
                    Err(Miss::Clean) => spans[inner.clone()].fill(None),
                    Err(Miss::GiveUp) => return Err(Miss::GiveUp),
                }
            }
            // Skipping an optional group is its last option, so no choice is left behind.
            match optional {
                true => Ok((at, false)),
                false => Err(Miss::Clean),
            }
        }
    }
}

/// The greedy run of `class` from `at`, at most `max` characters: (end, characters taken).
#[inline]
fn run(class: &Class, min: u32, max: u32, b: &[u8], at: usize) -> Result<(usize, u32), Miss> {
    if let (Some((s, n)), u32::MAX) = (class.stops, max) {
        let rest = &b[at..];
        let len = match n {
            0 => rest.len(),
            1 => memchr::memchr(s[0], rest).unwrap_or(rest.len()),
            2 => memchr::memchr2(s[0], s[1], rest).unwrap_or(rest.len()),
            _ => memchr::memchr3(s[0], s[1], s[2], rest).unwrap_or(rest.len()),
        };
        // An unbounded run's count only matters against `min`; a character is at most four
        // bytes, so past `4 * (min + 1)` bytes it is surely above, and counting can be skipped.
        let count = match len / 4 > min as usize {
            true => min.saturating_add(1),
            false => rest[..len].iter().filter(|&&c| (c as i8) >= -0x40).count() as u32,
        };
        return Ok((at + len, count));
    }
    let mut i = at;
    let mut count = 0u32;
    while count < max {
        let Some(&c) = b.get(i) else { break };
        if c < 0x80 {
            if class.ascii & (1 << c) == 0 {
                break;
            }
            i += 1;
        } else {
            match class.non_ascii {
                NonAscii::None => break,
                NonAscii::Unknown => return Err(Miss::GiveUp),
                NonAscii::All => {
                    i += match c {
                        0xF0.. => 4,
                        0xE0.. => 3,
                        _ => 2,
                    }
                }
            }
        }
        count += 1;
    }
    Ok((i, count))
}

/// A pattern compiled for the forward walk, when it is in the subset (module docs).
#[derive(Debug, Clone)]
pub(super) struct Walk {
    nodes: Vec<Node>,
}

impl Walk {
    /// `None` when `pattern` uses anything outside the subset, when its capture groups do
    /// not line up with the compiled regex's (a guard against misreading the syntax), or when
    /// the walk would rarely get through (`runs_stop_cleanly`).
    pub(super) fn compile(pattern: &str, re: &Regex) -> Option<Walk> {
        let walk = Walk::parse(pattern, re)?;
        // A run that can also take what follows it (`(?P<thread>.*):`) is usually cut back
        // by the regex engine, so the walk would fail on most lines and only add its cost.
        runs_stop_cleanly(&walk.nodes, First::END).then_some(walk)
    }

    pub(super) fn parse(pattern: &str, re: &Regex) -> Option<Walk> {
        let rest = pattern.strip_prefix('^')?;
        let mut p = WalkParser {
            s: rest.chars().collect(),
            i: 0,
            names: vec![None],
        };
        let alts = p.alts()?;
        if p.i != p.s.len() {
            return None;
        }
        let names: Vec<Option<&str>> = re.capture_names().collect();
        if names.len() != p.names.len() || names.iter().zip(&p.names).any(|(a, b)| *a != b.as_deref()) {
            return None;
        }
        // `^a|b` anchors only its first alternative: the walk takes a single top-level one.
        let [nodes]: [Vec<Node>; 1] = alts.try_into().ok()?;
        Some(Walk { nodes })
    }

    /// The capture spans of the match, or `None` when the walk cannot vouch for one (no match,
    /// or a match only the regex engine's backtracking order would find).
    pub(super) fn run(&self, line: &str, spans: &mut Spans) -> Option<()> {
        spans.fill(None);
        let (end, _) = walk_seq(&self.nodes, line.as_bytes(), 0, spans).ok()?;
        spans[0] = Some((0, end));
        Some(())
    }
}

/// What the text after some point of a pattern can start with.
#[derive(Debug, Clone, Copy)]
struct First {
    ascii: u128,
    non_ascii: bool,
}

impl First {
    const END: First = First {
        ascii: 0,
        non_ascii: false,
    };

    fn union(self, o: First) -> First {
        First {
            ascii: self.ascii | o.ascii,
            non_ascii: self.non_ascii || o.non_ascii,
        }
    }

    fn of_class(c: &Class) -> First {
        First {
            ascii: c.ascii,
            non_ascii: c.non_ascii != NonAscii::None,
        }
    }
}

/// The characters `nodes` can start with, when followed by text starting with `follow`.
fn first(nodes: &[Node], follow: First) -> First {
    let Some((n, rest)) = nodes.split_first() else {
        return follow;
    };
    match n {
        Node::Lit(l) => match l[0] {
            c @ 0..=0x7F => First {
                ascii: 1 << c,
                non_ascii: false,
            },
            _ => First {
                ascii: 0,
                non_ascii: true,
            },
        },
        Node::End => First::END,
        Node::Rep { class, min, .. } => match min {
            0 => First::of_class(class).union(first(rest, follow)),
            _ => First::of_class(class),
        },
        Node::Group { alts, optional, .. } => {
            let after = first(rest, follow);
            let mut f = if *optional { after } else { First::END };
            for a in alts {
                f = f.union(first(a, after));
            }
            f
        }
    }
}

/// Whether every run of varying length in `nodes` stops at a character that what follows it
/// cannot start with.
fn runs_stop_cleanly(nodes: &[Node], follow: First) -> bool {
    nodes.iter().enumerate().all(|(k, n)| {
        let after = first(&nodes[k + 1..], follow);
        match n {
            Node::Rep { class, min, max } if min != max => {
                let c = First::of_class(class);
                c.ascii & after.ascii == 0 && !(c.non_ascii && after.non_ascii)
            }
            Node::Group { alts, .. } => alts.iter().all(|a| runs_stop_cleanly(a, after)),
            _ => true,
        }
    })
}

/// Reads the subset's syntax; any construct it does not know makes it return `None`.
struct WalkParser {
    s: Vec<char>,
    i: usize,
    /// Capture names by index, as `Regex::capture_names` lists them.
    names: Vec<Option<String>>,
}

/// An atom before its quantifier.
enum Atom {
    Char(char),
    Class(Class),
}

const WORD: u128 = (0x3FF << b'0') | (0x3FF_FFFF << b'A') | (0x3FF_FFFF << b'a') | (1 << b'_');
const DIGIT: u128 = 0x3FF << b'0';
/// `\s` in ASCII: tab, newline, vertical tab, form feed, carriage return, space.
const SPACE: u128 = (0x1F << 9) | (1 << b' ');

impl WalkParser {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }

    /// Alternatives up to a `)` or the end (not consumed).
    fn alts(&mut self) -> Option<Vec<Vec<Node>>> {
        let mut alts = vec![self.seq()?];
        while self.eat('|') {
            alts.push(self.seq()?);
        }
        Some(alts)
    }

    fn seq(&mut self) -> Option<Vec<Node>> {
        let mut nodes: Vec<Node> = Vec::new();
        let mut lit = String::new();
        let flush = |lit: &mut String, nodes: &mut Vec<Node>| {
            if !lit.is_empty() {
                nodes.push(Node::Lit(std::mem::take(lit).into_bytes().into_boxed_slice()));
            }
        };
        while let Some(c) = self.peek() {
            let atom = match c {
                '|' | ')' => break,
                '(' => {
                    self.i += 1;
                    flush(&mut lit, &mut nodes);
                    nodes.push(self.group()?);
                    continue;
                }
                '$' => {
                    self.i += 1;
                    flush(&mut lit, &mut nodes);
                    nodes.push(Node::End);
                    continue;
                }
                '[' => {
                    self.i += 1;
                    Atom::Class(self.class()?)
                }
                '.' => {
                    self.i += 1;
                    Atom::Class(Class::new(!(1 << b'\n'), NonAscii::All))
                }
                '\\' => {
                    self.i += 1;
                    match self.next()? {
                        'd' => Atom::Class(Class::new(DIGIT, NonAscii::Unknown)),
                        'D' => Atom::Class(Class::new(!DIGIT, NonAscii::Unknown)),
                        'w' => Atom::Class(Class::new(WORD, NonAscii::Unknown)),
                        'W' => Atom::Class(Class::new(!WORD, NonAscii::Unknown)),
                        's' => Atom::Class(Class::new(SPACE, NonAscii::Unknown)),
                        'S' => Atom::Class(Class::new(!SPACE, NonAscii::Unknown)),
                        // `\<` and `\>` are word-boundary assertions, not the characters.
                        e if e.is_ascii_punctuation() && !matches!(e, '<' | '>') => Atom::Char(e),
                        _ => return None,
                    }
                }
                '^' | '*' | '+' | '?' | '{' | '}' | ']' => return None,
                c => {
                    self.i += 1;
                    Atom::Char(c)
                }
            };
            match (self.quantifier()?, atom) {
                (None, Atom::Char(c)) => lit.push(c),
                (None, Atom::Class(class)) => {
                    flush(&mut lit, &mut nodes);
                    nodes.push(Node::Rep { class, min: 1, max: 1 });
                }
                (Some((min, max)), atom) => {
                    let class = match atom {
                        Atom::Class(class) => class,
                        Atom::Char(c) if c.is_ascii() => Class::new(1 << c as u8, NonAscii::None),
                        Atom::Char(_) => return None,
                    };
                    flush(&mut lit, &mut nodes);
                    nodes.push(Node::Rep { class, min, max });
                }
            }
        }
        flush(&mut lit, &mut nodes);
        Some(nodes)
    }

    /// A greedy quantifier after an atom, if any: `Some(None)` for none, `None` for one the
    /// subset does not take (lazy, or unreadable).
    fn quantifier(&mut self) -> Option<Option<(u32, u32)>> {
        let q = match self.peek() {
            Some('*') => (0, u32::MAX),
            Some('+') => (1, u32::MAX),
            Some('?') => (0, 1),
            Some('{') => {
                self.i += 1;
                let min = self.number()?;
                let max = match self.next()? {
                    '}' => return self.after_quantifier((min, min)),
                    ',' if self.eat('}') => return self.after_quantifier((min, u32::MAX)),
                    ',' => self.number()?,
                    _ => return None,
                };
                if !self.eat('}') || max < min {
                    return None;
                }
                return self.after_quantifier((min, max));
            }
            _ => return Some(None),
        };
        self.i += 1;
        self.after_quantifier(q)
    }

    fn after_quantifier(&mut self, q: (u32, u32)) -> Option<Option<(u32, u32)>> {
        match self.peek() {
            Some('*' | '+' | '?' | '{') => None,
            _ => Some(Some(q)),
        }
    }

    fn number(&mut self) -> Option<u32> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits: String = self.s[start..self.i].iter().collect();
        digits.parse().ok().filter(|&n| n < u32::MAX)
    }

    /// After `(`: a capturing (named or not) or non-capturing group, with an optional `?`.
    fn group(&mut self) -> Option<Node> {
        let slot = if self.eat('?') {
            if self.eat(':') {
                None
            } else {
                if !self.eat('P') && self.peek() != Some('<') {
                    return None;
                }
                if !self.eat('<') {
                    return None;
                }
                let mut name = String::new();
                loop {
                    match self.next()? {
                        '>' => break,
                        c => name.push(c),
                    }
                }
                self.names.push(Some(name));
                Some(self.names.len() - 1)
            }
        } else {
            self.names.push(None);
            Some(self.names.len() - 1)
        };
        let first = slot.unwrap_or(self.names.len());
        let alts = self.alts()?;
        if !self.eat(')') {
            return None;
        }
        let optional = match self.quantifier()? {
            None => false,
            Some((0, 1)) => true,
            Some(_) => return None,
        };
        Some(Node::Group {
            slot,
            inner: first..self.names.len(),
            alts,
            optional,
        })
    }

    /// After `[`: a class of ASCII characters, ranges and `\d`/`\w`/`\s`, maybe negated.
    fn class(&mut self) -> Option<Class> {
        let negated = self.eat('^');
        let mut set: u128 = 0;
        let mut unicode = false;
        if self.peek() == Some(']') {
            return None;
        }
        loop {
            let c = self.next()?;
            let lo = match c {
                ']' => break,
                '[' => return None,
                '&' | '-' | '~' if self.peek() == Some(c) => return None,
                '\\' => match self.next()? {
                    'd' => {
                        set |= DIGIT;
                        unicode = true;
                        continue;
                    }
                    'w' => {
                        set |= WORD;
                        unicode = true;
                        continue;
                    }
                    's' => {
                        set |= SPACE;
                        unicode = true;
                        continue;
                    }
                    e if e.is_ascii_punctuation() && !matches!(e, '<' | '>') => e,
                    _ => return None,
                },
                c if c.is_ascii() => c,
                _ => return None,
            };
            if self.peek() == Some('-') && self.s.get(self.i + 1).is_some_and(|&n| n != ']') {
                self.i += 1;
                let hi = self.next()?;
                if !hi.is_ascii() || matches!(hi, '\\' | '[') || hi < lo {
                    return None;
                }
                for b in lo as u8..=hi as u8 {
                    set |= 1 << b;
                }
            } else {
                set |= 1 << lo as u8;
            }
        }
        Some(match (negated, unicode) {
            (false, false) => Class::new(set, NonAscii::None),
            (true, false) => Class::new(!set, NonAscii::All),
            (_, true) => Class::new(if negated { !set } else { set }, NonAscii::Unknown),
        })
    }
}
